"""The records lane: jobs run once each, in order, in batches (one wake-up for a burst), and stop() runs or
returns what is queued."""

from __future__ import annotations

import threading
import time

from sibyl.serving.after_response import BatchLane


def wait_until(predicate, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_a_burst_runs_in_order_after_one_wake_up() -> None:
    lane = BatchLane("test", size=1_000, linger_s=2.0)  # longer than 500 offers take on a busy machine
    lane.start()
    assert wait_until(lambda: lane._idle)  # asleep
    ran: list[int] = []
    for i in range(500):
        assert lane.offer(lambda i=i: ran.append(i))
    assert wait_until(lambda: len(ran) == 500)
    assert ran == list(range(500))
    assert lane.wakeups == 1  # not one per job
    assert lane.stop(5) == [] and len(ran) == 500  # nothing left over, nothing run twice


def test_jobs_from_many_threads_each_run_once() -> None:
    lane = BatchLane("test", size=100_000, linger_s=0.001)
    lane.start()
    ran: list[tuple[int, int]] = []

    def produce(t: int) -> None:
        for i in range(2_000):
            assert lane.offer(lambda t=t, i=i: ran.append((t, i)))
            if i % 100 == 0:
                time.sleep(0.002)  # let the lane fall asleep now and then: wake-ups race with offers

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    assert wait_until(lambda: len(ran) == 8_000)
    for t in range(4):
        assert [i for s, i in ran if s == t] == list(range(2_000))  # each producer's jobs in order
    lane.stop(5)


def test_full_queue_refuses_and_stop_returns_what_it_could_not_run() -> None:
    lane = BatchLane("test", size=2, linger_s=0.0)
    lane.start()
    release = threading.Event()
    started, finished = threading.Event(), threading.Event()
    assert lane.offer(lambda: (started.set(), release.wait(10), finished.set()))
    assert started.wait(10)
    assert lane.offer(lambda: None) and lane.offer(lambda: None)
    assert not lane.offer(lambda: None)  # full
    left = lane.stop(0.2)  # the running job blocks: the two queued ones come back
    assert len(left) == 2  # three held: the running one (below) and these two
    release.set()
    assert finished.wait(10)


def test_stop_runs_what_is_queued() -> None:
    lane = BatchLane("test", size=100, linger_s=0.5)
    lane.start()
    ran: list[int] = []
    for i in range(10):
        lane.offer(lambda i=i: ran.append(i))
    assert lane.stop(5) == []
    assert ran == list(range(10))
