"""sibyl.gil pacing: when an enrolled after-response thread gives the GIL back, waits for the loop to go idle, or
works on; that it never acts on a thread that did not enroll; and that a paced log writer under a loop that is
never idle still writes every record (docs/performance.md#gil-pacing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sibyl.gil import pacing
from sibyl.gil.pacing import GATE, Pacing, enroll, pace
from sibyl.observability.metrics import Metrics
from sibyl.predlog.file import FileSink
from sibyl.predlog.jsonl import from_json_line
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.kafkaread import wait_for


class Clock:
    """perf_counter and sleep for pacing.time: time moves only when the test (or a sleep) moves it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(pacing, "time", fake)
    GATE.configure(Pacing(slice_s=0.000_2, defer_s=0.002))
    try:
        yield fake
    finally:
        GATE.configure(Pacing())
        pacing._enrolled.__dict__.clear()


def test_a_thread_that_did_not_enroll_is_never_paced(clock: Clock) -> None:
    clock.now += 1.0
    pace()
    assert clock.sleeps == []


def test_an_enrolled_thread_gives_the_gil_back_after_each_slice(clock: Clock) -> None:
    enroll()
    clock.now += 0.000_1
    pace()
    assert clock.sleeps == []  # within its slice: works on
    clock.now += 0.000_2
    pace()
    assert clock.sleeps == [pacing.PAUSE_S]
    pace()
    assert len(clock.sleeps) == 1  # a new slice began after the pause


def test_off_by_default(clock: Clock) -> None:
    GATE.configure(Pacing())
    enroll()
    clock.now += 1.0
    pace()
    assert clock.sleeps == []


def test_a_thread_waits_for_the_call_in_flight_to_end(clock: Clock) -> None:
    GATE.configure(Pacing(slice_s=0.000_2, defer_s=30.0))
    enroll()
    GATE.enter()
    left = threading.Timer(0.05, GATE.leave)
    left.start()
    clock.now += 0.001
    pace()  # blocks on the gate's event (real time) until the call leaves
    left.join()
    assert GATE.in_flight == 0
    assert clock.sleeps == [pacing.PAUSE_S]


def test_a_loop_that_never_goes_idle_is_not_waited_for_again(clock: Clock) -> None:
    GATE.configure(Pacing(slice_s=0.000_2, defer_s=0.01))
    enroll()
    GATE.enter()
    try:
        clock.now += 0.001
        pace()  # waits defer_s (real time) and the call goes on: the loop is busy
        assert clock.sleeps == []
        clock.now += 0.001
        pace()  # unpaced for BUSY_S: no wait, no pause
        assert clock.sleeps == []
        clock.now += pacing.BUSY_S
        with_backlog = 0.9  # ... and a thread half a queue behind never waits for idle, only pauses
        pace(with_backlog)
        assert clock.sleeps == [pacing.PAUSE_S]
    finally:
        GATE.leave()


def test_concurrent_calls_are_not_paced_between(clock: Clock) -> None:
    enroll()
    GATE.enter()
    GATE.enter()
    try:
        clock.now += 0.001
        pace()  # two calls in flight: the loop has work queued, pauses would only add hand-offs
        assert clock.sleeps == []
    finally:
        GATE.leave()
        GATE.leave()


def test_a_paced_log_writer_under_a_loop_never_idle_writes_every_record(tmp_path: Path) -> None:
    """Real time and a real file sink, paced hard (a 10 us slice, 50 ms waits for idle) while a call is always in
    flight: the writer's own thread (not close()) writes every record, in order."""
    GATE.configure(Pacing(slice_s=0.000_01, defer_s=0.05))
    GATE.enter()
    path = tmp_path / "p.jsonl"
    sink = FileSink(path, Metrics(), batch_max=100, poll_s=0.001, queue_size=5_000)
    try:
        sink.start()
        for i in range(3_000):
            sink.submit(PredictionLog(prediction_id=f"id-{i:05d}", predictor="p", scores=[0.5]))
        wait_for(lambda: len(path.read_text().splitlines()) == 3_000, 60, "the paced writer to write 3,000 lines")
    finally:
        GATE.leave()
        sink.close()
        GATE.configure(Pacing())
    written = [from_json_line(line).prediction_id for line in path.read_text().splitlines()]
    assert written == [f"id-{i:05d}" for i in range(3_000)]
