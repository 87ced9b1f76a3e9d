"""What follows a response (shadow scoring, building and handing over the log record) runs after the response: a
shadow or a big call's record build that takes long never holds up other calls (the after-response threads); a
small call's follow-up runs on the event loop once its response is out (server.followup_inline_rows). Proven by
order of events and by thread, not by the clock: primary calls complete while the slow work is provably still
running."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sibyl.observability.metrics import Metrics
from sibyl.serving import after_response as after_response_module
from sibyl.serving import followup as followup_module
from sibyl.serving.after_response import AfterResponse
from sibyl.v1.predict_pb2 import ROLE_PRIMARY, FeatureRow, PredictRequest
from tests.support.inproc import running_server

CALLS = 20


def request(i: int) -> PredictRequest:
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i)})])


class Gate:
    """Blocks the first caller of `wrap(fn)` until `release()`; records the order of what happened."""

    def __init__(self) -> None:
        self.started, self._release = threading.Event(), threading.Event()
        self.events: list[str] = []

    def wrap(self, fn: Callable[..., Any], what: str) -> Callable[..., Any]:
        def slow(*args: Any, **kwargs: Any) -> Any:
            if not self.started.is_set():
                self.started.set()
                self.events.append(f"{what} started")
                self._release.wait(10)  # bounded: a regression fails the order check, it does not hang
                self.events.append(f"{what} finished")
            return fn(*args, **kwargs)

        return slow

    def release(self) -> None:
        self._release.set()


def counter(server: Any, name: str, labels: dict[str, str]) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


async def wait_until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_a_slow_shadow_does_not_delay_primary_calls(store: Path) -> None:
    async with running_server(store) as server:
        gate = Gate()
        shadow = server.registry.snapshot.models[("s", "1")]
        shadow.run = gate.wrap(shadow.run, "shadow")  # type: ignore[method-assign]
        await server.service.predict(request(0))  # its shadow (s@1, sample 1.0) blocks in run()
        assert await asyncio.to_thread(gate.started.wait, 10)
        for i in range(1, CALLS + 1):
            response = await server.service.predict(request(i))
            assert response.results[0].model == "m"
        gate.events.append(f"{CALLS} primary calls answered")
        gate.release()
        run = {"predictor": "p", "outcome": "run"}
        await wait_until(lambda: counter(server, "sibyl_shadows_total", run) == CALLS + 1)
    assert gate.events == ["shadow started", f"{CALLS} primary calls answered", "shadow finished"]


async def test_a_slow_record_build_on_the_records_thread_does_not_delay_primary_calls(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records lane's promise, for calls above followup_inline_rows (here every call: 0)."""
    gate = Gate()
    monkeypatch.setattr(followup_module, "build_record", gate.wrap(followup_module.build_record, "record build"))
    async with running_server(store, server={"followup_inline_rows": 0}) as server:
        await server.service.predict(request(0))
        assert await asyncio.to_thread(gate.started.wait, 10)
        ids = [(await server.service.predict(request(i))).prediction_id for i in range(1, CALLS + 1)]
        gate.events.append(f"{CALLS} primary calls answered")
        gate.release()
    assert gate.events == ["record build started", f"{CALLS} primary calls answered", "record build finished"]
    lines = [json.loads(line) for line in (store / "predictions.jsonl").read_text().splitlines()]
    logged = {r.get("prediction_id") or r["predictionId"] for r in lines if r.get("role") == "ROLE_PRIMARY"}
    assert set(ids) <= logged, "records built after the gate opened must all reach the log"


@pytest.mark.parametrize("rows", [1, 3])
async def test_a_small_calls_follow_up_runs_on_the_event_loop_after_its_response(
    store: Path, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    """At most followup_inline_rows rows: the record is built on the loop's thread, after predict() returned (queued
    with call_soon, not run inside the call), and reaches the log; one row more goes to the records thread."""
    built: list[tuple[int, str]] = []  # (rows, thread name) of each primary record built (p also has a shadow)
    original = followup_module.build_record

    def build(**fields: Any) -> Any:
        if fields["role"] == ROLE_PRIMARY:
            built.append((fields["batch"].num_rows, threading.current_thread().name))
        return original(**fields)

    monkeypatch.setattr(followup_module, "build_record", build)
    many = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": float(i)}) for i in range(rows)])
    async with running_server(store, server={"followup_inline_rows": 2}) as server:
        answer = await server.service.predict(many)
        assert built == [], "the follow-up ran inside the call, before its response"
        await wait_until(lambda: len(built) == 1)
        await server.app.after.stop(10.0)
    loop_thread = threading.current_thread().name  # the test's loop is the server's
    assert built == [(rows, loop_thread if rows <= 2 else "sibyl-records-0")]
    lines = [json.loads(line) for line in (store / "predictions.jsonl").read_text().splitlines()]
    primary = [r.get("prediction_id") or r["predictionId"] for r in lines if r.get("role") == "ROLE_PRIMARY"]
    assert primary == [answer.prediction_id]


def _observed(histogram: Any) -> float:
    """How many values a histogram child holds, read without a collect (which would flush the queued updates)."""
    return float(sum(bucket.get() for bucket in histogram._buckets))


def _count_flushes(deferred: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread name of every flush of `deferred` from now on."""
    flushes: list[str] = []
    real_flush = deferred.flush

    def flush() -> int:
        flushes.append(threading.current_thread().name)
        return real_flush()

    monkeypatch.setattr(deferred, "flush", flush)
    return flushes


async def test_follow_ups_on_the_loop_flush_at_the_end_of_a_burst_and_every_32_within_one(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Follow-ups queued on the loop together (a busy server) share flushes: one every INLINE_FLUSH_EVERY jobs and
    one when the last has run; a lone one (a quiet server) is flushed right after it runs, not left for a scrape."""
    every = after_response_module.INLINE_FLUSH_EVERY
    async with running_server(store) as server:
        flushes = _count_flushes(server.metrics.deferred, monkeypatch)
        after, ran = server.app.after, []
        for i in range(every + 5):  # queued without a yield: they run together at the next turn of the loop
            assert after.submit_followup(lambda i=i: ran.append(i), records=0, rows=1)
        assert not ran and not flushes
        await asyncio.sleep(0)
        on_loop = threading.current_thread().name
        assert len(ran) == every + 5
        assert flushes == [on_loop, on_loop]  # after the 32nd, and after the last
        after.submit_followup(lambda: ran.append(-1), records=0, rows=1)
        await asyncio.sleep(0)
        assert flushes == [on_loop] * 3


async def test_a_lone_calls_metric_updates_are_applied_after_its_follow_up(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One call and nothing after it: its stage latencies reach the metrics as its follow-up ends (with several workers a
    scrape reads another worker's updates only once flushed, tests/process/test_workers.py)."""
    async with running_server(store) as server:
        latency = server.metrics.stage_latency.labels("route")  # deferred by every predict()
        before = _observed(latency)
        flushes = _count_flushes(server.metrics.deferred, monkeypatch)
        await server.service.predict(request(0))
        await asyncio.sleep(0)
        assert flushes == [threading.current_thread().name]
        assert _observed(latency) == before + 1


async def test_shadows_are_shed_when_their_queue_is_full_or_the_server_is_busy() -> None:
    metrics = Metrics()
    busy = False
    runner = AfterResponse(metrics, queue_size=2, concurrency=1, is_busy=lambda: busy)
    runner.start()
    gate = Gate()
    ran: list[int] = []
    blocked = gate.wrap(lambda: ran.append(0), "shadow")
    assert runner.submit_shadow("p", blocked)
    assert await asyncio.to_thread(gate.started.wait, 10)  # the only shadow thread is busy
    assert runner.submit_shadow("p", lambda: ran.append(1)) and runner.submit_shadow("p", lambda: ran.append(2))
    assert not runner.submit_shadow("p", lambda: ran.append(3))  # queue full: shed at once
    busy = True
    assert not runner.submit_shadow("p", lambda: ran.append(4))  # server busy: shed at once
    gate.release()
    await runner.stop(timeout_s=10)
    assert ran == [0, 1, 2]
    sample = metrics.registry.get_sample_value
    assert sample("sibyl_shadows_total", {"predictor": "p", "outcome": "shed"}) == 2
    assert sample("sibyl_shadows_total", {"predictor": "p", "outcome": "run"}) == 3


async def test_a_full_record_queue_drops_and_counts() -> None:
    metrics = Metrics()
    runner = AfterResponse(metrics, queue_size=1, concurrency=1, record_queue_size=1)
    runner.start()
    gate = Gate()
    assert runner.submit_followup(gate.wrap(lambda: None, "records"), records=2)
    assert await asyncio.to_thread(gate.started.wait, 10)
    assert runner.submit_followup(lambda: None, records=2)
    assert not runner.submit_followup(lambda: None, records=3)
    gate.release()
    await runner.stop(timeout_s=10)
    assert metrics.registry.get_sample_value("sibyl_predlog_records_total", {"outcome": "dropped"}) == 3


@pytest.mark.parametrize(
    "matrix",
    [
        np.arange(3 * 16_384 + 5, dtype=np.float32).reshape(-1, 1),  # a length varint of three bytes
        np.array([[1.5, np.nan, -0.0, 3.4e38]], np.float32),
        np.arange(40, dtype=np.float32).reshape(8, 5)[:, ::2],  # a strided view: copied row-major
        np.arange(12, dtype=">f4").reshape(3, 4),  # big-endian input: written little-endian
        np.empty((2, 0), np.float32),  # no feature columns: the field stays empty
    ],
)
def test_record_float_fields_hold_every_value_in_order(matrix: np.ndarray) -> None:
    """build_record writes the matrix and the scores as packed wire bytes: the record reads back exactly what
    extend(values.tolist()) would have put there, NaN and -0.0 included, and serializes the same."""
    from sibyl.serving.records import build_record
    from sibyl.v1.predlog_pb2 import PredictionLog

    scores = (matrix[:, :1] * 2 if matrix.shape[1] else np.ones((matrix.shape[0], 1))).astype(np.float32)
    batch = type("B", (), {"num_rows": matrix.shape[0], "shared_entities": {}, "row_entities": {}})()
    columns = [f"c{i}" for i in range(matrix.shape[1])]
    record = build_record(
        prediction_id="x", request_id="", predictor="p", model="m", version="1", role=1, arm="", sent_at_ns=0,
        batch=batch, columns=columns, matrix=matrix, defaulted={}, scores=scores, latency_ms=0.0, host="h",
    )  # fmt: skip
    expected = PredictionLog()
    expected.CopyFrom(record)
    expected.ClearField("feature_values")
    expected.ClearField("scores")
    expected.feature_values.extend(matrix.astype(np.float32).ravel().tolist())
    expected.scores.extend(scores.ravel().tolist())
    got = np.asarray(record.feature_values, np.float32)
    np.testing.assert_array_equal(got, matrix.astype(np.float32).ravel())
    assert np.signbit(got).tolist() == np.signbit(matrix.astype(np.float32).ravel()).tolist()
    assert record.SerializeToString() == expected.SerializeToString()
    assert PredictionLog.FromString(record.SerializeToString()).scores == expected.scores
