"""Load under faults: closed-loop clients that record every outcome, and the figures each scenario prints.

A scenario: start load, break something (mark "fault"), repair it (mark "repair"), wait until answers are
healthy again, stop. `Figures` then says: calls sent, failures by code, predictions answered vs logged, and the
time from repair to the first healthy answer (and to a run of them).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub

NEVER = {"UNKNOWN", "INTERNAL"}  # a fault outside must never look like our bug


@dataclass(frozen=True, slots=True)
class Outcome:
    t: float  # seconds since the load started
    code: str
    response: PredictResponse | None
    worker: str = ""  # pid of the worker process that answered (trailing metadata), when tracked


_LOADS_RUNNING = [0]


def _freeze_heap() -> None:
    """The load client runs in pytest's process, beside the whole session's heap (hundreds of thousands of
    objects by the fault tests). A full collection there pauses the client for a quarter of a second and more,
    and a client's pause reads as the server's stall: calls past their deadline, a p99 that is the client's.
    While a load runs, objects made before it are left out of collections (gc.freeze); its own are collected."""
    if _LOADS_RUNNING[0] == 0:
        gc.freeze()
    _LOADS_RUNNING[0] += 1


def _thaw_heap() -> None:
    _LOADS_RUNNING[0] -= 1
    if _LOADS_RUNNING[0] == 0:
        gc.unfreeze()


class _Clock:
    """What Load and OpenLoad share: the time since __aenter__ set _start, named marks on it, and closing the
    _channels __aenter__ opened (and the heap frozen while a load runs: _freeze_heap)."""

    _start: float
    _channels: list[grpc.aio.Channel]
    marks: dict[str, float]

    def now(self) -> float:
        return time.monotonic() - self._start

    def mark(self, name: str) -> None:
        self.marks[name] = self.now()

    async def _close_channels(self) -> None:
        for channel in self._channels:
            await channel.close()


@dataclass
class Load(_Clock):
    """`concurrency` clients, each sending the next request as soon as the last one is answered."""

    target: str
    make_request: Callable[[int], PredictRequest]
    concurrency: int = 4
    timeout_s: float = 5.0
    max_calls: int = 200_000  # a bound even if a scenario forgets to stop
    channel_per_client: bool = False  # SO_REUSEPORT spreads connections, not calls: one each to reach all workers
    pause_s: float = 0.001  # between one client's calls
    outcomes: list[Outcome] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    async def __aenter__(self) -> Load:
        _freeze_heap()
        self._start = time.monotonic()
        self._stop = asyncio.Event()
        self._channels = [
            grpc.aio.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(self.concurrency if self.channel_per_client else 1)
        ]
        stubs = [PredictionServiceStub(self._channels[w % len(self._channels)]) for w in range(self.concurrency)]
        self._tasks = [asyncio.create_task(self._client(stub, w)) for w, stub in enumerate(stubs)]
        return self

    async def _client(self, stub: PredictionServiceStub, worker: int) -> None:
        i = worker
        while not self._stop.is_set() and len(self.outcomes) < self.max_calls:
            i += self.concurrency
            try:
                call = stub.Predict(self.make_request(i), timeout=self.timeout_s)
                response = await call
                pid = dict(await call.trailing_metadata() or ()).get("sibyl-worker", "")
                self.outcomes.append(Outcome(self.now(), "OK", response, str(pid)))
            except grpc.aio.AioRpcError as exc:
                self.outcomes.append(Outcome(self.now(), exc.code().name, None))
                await asyncio.sleep(0.01)  # a failing server is not hammered in a tight loop
            await asyncio.sleep(self.pause_s)

    async def __aexit__(self, *exc: object) -> None:
        try:
            self._stop.set()
            await asyncio.gather(*self._tasks)
            await self._close_channels()
        finally:
            _thaw_heap()

    async def wait_for(self, healthy: Callable[[Outcome], bool], run: int = 20, timeout_s: float = 30.0) -> float:
        """Seconds from now until `run` consecutive outcomes are healthy; fails the test after timeout_s."""
        start, seen = self.now(), len(self.outcomes)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            recent = self.outcomes[seen:]
            if len(recent) >= run and all(healthy(o) for o in recent[-run:]):
                return recent[-run].t - start
            await asyncio.sleep(0.02)
        raise AssertionError(f"not healthy within {timeout_s} s: last codes {[o.code for o in self.outcomes[-5:]]}")

    async def settle(self, calls: int = 20, timeout_s: float = 10.0) -> None:
        """Wait until `calls` more outcomes are in (the load is really running)."""
        target = len(self.outcomes) + calls
        deadline = time.monotonic() + timeout_s
        while len(self.outcomes) < target:
            assert time.monotonic() < deadline, "load made no progress"
            await asyncio.sleep(0.02)

    # ---- figures
    def codes(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(o.code for o in self.outcomes if since <= o.t < until)

    def answered(self) -> set[str]:
        return {o.response.prediction_id for o in self.outcomes if o.response is not None}

    def first(self, healthy: Callable[[Outcome], bool], after: str) -> float | None:
        """Seconds from mark `after` to the first healthy outcome."""
        t0 = self.marks[after]
        return next((o.t - t0 for o in self.outcomes if o.t >= t0 and healthy(o)), None)


def logged_ids_from_file(paths: Iterable[Path], role: str = "ROLE_PRIMARY") -> set[str]:
    ids: set[str] = set()
    for path in paths:
        if path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("role") == role:
                    ids.add(record.get("prediction_id") or record["predictionId"])
    return ids


def report(
    name: str, load: Load, logged: set[str], recovery: dict[str, float | None], must_log: set[str] | None = None
) -> str:
    """Print (pytest -s shows it) and return one paragraph of figures; then check the two invariants:
    no UNKNOWN/INTERNAL, and every answered prediction (or the `must_log` part of them) is in the log."""
    answered = load.answered()
    codes = load.codes()
    marks = ", ".join(f"{k} at {v:.2f} s" for k, v in load.marks.items())
    during = {
        k: dict(load.codes(load.marks[k], load.marks.get("repair", float("inf"))))
        for k in ("fault",)
        if k in load.marks
    }
    times = ", ".join(f"{k} {v * 1000:.0f} ms" if v is not None else f"{k} never" for k, v in recovery.items())
    text = (
        f"[{name}] calls {sum(codes.values())} {dict(codes)}; during fault {during.get('fault', {})}; "
        f"answered {len(answered)}, logged {len(answered & logged)} (missing {len(answered - logged)}); "
        f"{marks}; recovery: {times}"
    )
    missing = sorted(o.t for o in load.outcomes if o.response and o.response.prediction_id not in logged)
    if missing:
        text += f"; missing ones answered between {missing[0]:.2f} and {missing[-1]:.2f} s"
    print("\n" + text)
    bad = {code: n for code, n in codes.items() if code in NEVER}
    assert not bad, f"{name}: calls failed with {bad}"
    required = answered if must_log is None else must_log
    assert required <= logged, f"{name}: {len(required - logged)} answered predictions missing from the log"
    return text


@dataclass(frozen=True, slots=True)
class Shot:
    """One open-loop call: when it was sent, how it ended, how long it took."""

    t: float  # seconds since the load started, at send time
    code: str
    latency_s: float
    prediction_id: str = ""
    worker: str = ""  # pid of the worker that answered (trailing metadata "sibyl-worker")
    response: PredictResponse | None = None


@dataclass
class OpenLoad(_Clock):
    """Open loop: one call every 1/rate s, whether or not earlier ones were answered (a stall shows up as
    failed or slow calls, not as fewer calls). Each call has its own `deadline_s`; stops at `max_calls`.
    channels > 1: calls go round-robin over that many connections (SO_REUSEPORT spreads connections, not
    calls, so this is how load reaches every worker of `--workers N`); workers: before the load starts, the
    connections are made again until they reach that many distinct workers."""

    target: str
    make_request: Callable[[int], PredictRequest]
    rate: float = 100.0
    deadline_s: float = 2.0
    max_calls: int = 20_000
    channels: int = 1
    workers: int = 0
    shots: list[Shot] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    async def __aenter__(self) -> OpenLoad:
        _freeze_heap()
        self._start = time.monotonic()
        self._stop = asyncio.Event()
        options = [("grpc.use_local_subchannel_pool", 1)] if self.channels > 1 else []
        self._channels = [grpc.aio.insecure_channel(self.target, options=options) for _ in range(self.channels)]
        self._stubs = [PredictionServiceStub(channel) for channel in self._channels]
        if self.workers > 1:
            try:
                await self._spread(options)
            except BaseException:
                _thaw_heap()  # no __aexit__ follows a failed __aenter__
                raise
            self._start = time.monotonic()
        self._calls: set[asyncio.Task[None]] = set()
        self._pacer = asyncio.create_task(self._pace())
        return self

    async def _spread(self, options: list[tuple[str, int]]) -> None:
        """SO_REUSEPORT hashes each connection to a worker: 8 connections all land on one of 2 workers once in
        128 runs. So a connection that shares its worker is made again until `workers` distinct ones answer."""
        probe = self.make_request(-1)

        async def worker_of(i: int) -> str:
            call = self._stubs[i].Predict(probe, timeout=self.deadline_s, wait_for_ready=True)
            await call
            return await _worker(call)

        on = [await worker_of(i) for i in range(len(self._stubs))]
        for _ in range(100):
            if len(set(on)) >= self.workers:
                return
            i = max(range(len(on)), key=lambda k: on.count(on[k]))  # a connection on the most shared worker
            await self._channels[i].close()
            self._channels[i] = grpc.aio.insecure_channel(self.target, options=options)
            self._stubs[i] = PredictionServiceStub(self._channels[i])
            on[i] = await worker_of(i)
        raise AssertionError(f"{len(on)} connections reached workers {set(on)}, not {self.workers}")

    async def _pace(self) -> None:
        for i in range(self.max_calls):
            if self._stop.is_set():
                return
            delay = self._start + i / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._call(i))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, i: int) -> None:
        sent = time.monotonic()
        response, worker = None, ""
        try:
            call = self._stubs[i % len(self._stubs)].Predict(self.make_request(i), timeout=self.deadline_s)
            response = await call
            code, pid = "OK", response.prediction_id
            worker = await _worker(call)
        except grpc.aio.AioRpcError as exc:
            code, pid = exc.code().name, ""
        self.shots.append(Shot(sent - self._start, code, time.monotonic() - sent, pid, worker, response))

    async def __aexit__(self, *exc: object) -> None:
        try:
            self._stop.set()
            await self._pacer
            if self._calls:
                await asyncio.wait(set(self._calls), timeout=self.deadline_s + 5)
            await self._close_channels()
        finally:
            _thaw_heap()

    # ---- figures
    def between(self, start: str, end: str | None = None) -> list[Shot]:
        t0, t1 = self.marks[start], self.marks[end] if end else float("inf")
        return [s for s in self.shots if t0 <= s.t < t1]

    def failed(self) -> list[Shot]:
        return [s for s in self.shots if s.code != "OK"]

    def in_flight_at(self, t: float) -> list[Shot]:
        """Calls sent before `t` (seconds since start) that had not ended by then."""
        return [s for s in self.shots if s.t <= t < s.t + s.latency_s]

    def first(self, healthy: Callable[[Shot], bool], after: str) -> float | None:
        """Seconds from mark `after` to the send time of the first healthy call sent after it."""
        t0 = self.marks[after]
        return min((s.t - t0 for s in self.shots if s.t >= t0 and healthy(s)), default=None)

    def answered(self) -> set[str]:
        return {s.prediction_id for s in self.shots if s.code == "OK"}

    def failures_per_second(self) -> dict[int, int]:
        """Second of the run (by send time) -> calls that failed, for the seconds that had any."""
        return dict(sorted(Counter(int(s.t) for s in self.failed()).items()))

    def codes(self) -> Counter[str]:
        return Counter(s.code for s in self.shots)

    def p99_per_second(self) -> dict[int, float]:
        """Second of the run (by send time) -> p99 of its answered calls, in ms."""
        seconds: dict[int, list[Shot]] = {}
        for shot in self.shots:
            seconds.setdefault(int(shot.t), []).append(shot)
        return {sec: round(p99_ms(shots), 1) for sec, shots in sorted(seconds.items())}


async def _worker(call: grpc.aio.Call) -> str:
    """The pid of the worker that answered (the `sibyl-worker` trailer), or ""."""
    return str(dict(await call.trailing_metadata() or ()).get("sibyl-worker", ""))


def p99_ms(shots: list[Shot]) -> float:
    """99th percentile latency of the answered calls among `shots`, in ms (0 when there are none)."""
    latencies = sorted(s.latency_s for s in shots if s.code == "OK")
    if not latencies:
        return 0.0
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
