"""sibyl_thread_cpu_seconds_total: each thread's series is that thread's own CPU clock, the series add up to the
process's CPU time, ended threads and default-named threads keep the series bounded."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, generate_latest

from sibyl.observability.thread_cpu import OTHER, ThreadCpuCollector, thread_seconds


def _spin(cpu_s: float) -> float:
    start = time.thread_time()
    while time.thread_time() - start < cpu_s:
        pass
    return time.thread_time()


def test_a_threads_series_is_its_own_cpu_clock() -> None:
    seen: dict[str, float] = {}
    go_on = threading.Event()

    def work() -> None:
        seen["own"] = _spin(0.05)  # the thread's own reading, after its work
        seen["exported"] = thread_seconds()["spinner"]  # read while it is still alive, from itself
        go_on.wait(5)

    thread = threading.Thread(target=work, name="spinner")
    thread.start()
    while "exported" not in seen:
        time.sleep(0.01)
    from_outside = thread_seconds()["spinner"]
    go_on.set()
    thread.join()
    assert seen["own"] >= 0.05
    # The same kernel clock read three times, in this order: never less than what the thread saw before.
    assert seen["own"] <= seen["exported"] <= from_outside
    assert from_outside - seen["own"] < 0.05  # not the 0.05 s of work counted twice, nor another thread's
    assert "spinner" not in thread_seconds()  # ended: its seconds now count in OTHER


def test_series_sum_to_the_process_cpu_and_other_carries_ended_threads() -> None:
    thread = threading.Thread(target=_spin, args=(0.05,), name="ends-soon")
    before = thread_seconds()
    thread.start()
    thread.join()
    after = thread_seconds()
    process = time.clock_gettime(time.CLOCK_PROCESS_CPUTIME_ID)
    assert after[OTHER] - before[OTHER] >= 0.05  # the ended thread's work moved into OTHER
    total = sum(after.values())
    assert total <= process  # OTHER is computed from a process reading taken before this one
    assert process - total < 0.05


def test_default_thread_names_share_one_label() -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(3)]  # "Thread-<n> (wait)"
    for thread in threads:
        thread.start()
    try:
        labels = thread_seconds().keys()
        assert "Thread-N (wait)" in labels
        assert not [label for label in labels if label.startswith("Thread-") and label[7].isdigit()]
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_exported_as_a_counter() -> None:
    registry = CollectorRegistry()
    ThreadCpuCollector(registry)
    text = generate_latest(registry).decode()
    assert "# TYPE sibyl_thread_cpu_seconds_total counter" in text
    main = threading.main_thread().name
    assert f'sibyl_thread_cpu_seconds_total{{thread="{main}"}}' in text
    assert f'sibyl_thread_cpu_seconds_total{{thread="{OTHER}"}}' in text
