"""The load generator: open loop (constant arrival rate) and closed loop (N callers), on one event loop.

Open loop: request i is due at t0 + i / rate whatever happened before, and its latency is measured from that
INTENDED time. A server stall therefore shows up in the latency of every request that was due during it
(no coordinated omission); a closed loop simply stops sending during a stall and hides it.
Requests whose intended time falls in the warm-up are sent but not recorded. Every run is bounded: a
request count, a duration and a drain timeout. A `cpu.Window`, when given, is opened when the measured window
begins and closed when its calls are done: the server's and the client's CPU per answered call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from benchmarks.load.cpu import Window
from benchmarks.load.stats import new_histogram, record_us

Call = Callable[[], Awaitable[object]]


@dataclass
class RunResult:
    """What one client saw. `latency` holds successful calls only; failures are counted by code."""

    mode: str
    target_rps: float  # offered rate (open loop) or 0 (closed loop)
    duration_s: float  # measured window, warm-up excluded
    latency: HdrHistogram = field(default_factory=new_histogram)
    send_lag: HdrHistogram = field(default_factory=new_histogram)  # how late the generator sent (open loop)
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0  # still outstanding at the drain timeout (counted as errors too)
    concurrency: int = 0  # closed loop: callers
    server_cpu_s: float | None = None  # the server's process tree over the measured window (None: not read)
    client_cpu_s: float = 0.0  # the load client's own process over the measured window
    cpu_wall_s: float = 0.0  # how long that window was

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def server_cpu_us_per_call(self) -> float | None:
        return self.server_cpu_s / self.ok * 1e6 if self.server_cpu_s is not None and self.ok else None

    @property
    def client_cpu_us_per_call(self) -> float | None:
        return self.client_cpu_s / self.ok * 1e6 if self.ok else None

    def take_cpu(self, window: Window | None) -> None:
        if window is not None:
            self.server_cpu_s, self.client_cpu_s, self.cpu_wall_s = (
                window.server_cpu_s,
                window.client_cpu_s,
                window.wall_s,
            )


def error_code(exc: BaseException) -> str:
    """gRPC status name for RPC errors (e.g. DEADLINE_EXCEEDED), the exception type otherwise."""
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return str(code().name)
        except Exception:  # not a grpc error after all
            pass
    return f"CLIENT_{type(exc).__name__}"


async def _timed_call(call: Call, result: RunResult, since: float, measured: bool) -> None:
    """One call; when measured, its latency from `since` (a time.monotonic() instant) or its error code."""
    try:
        await call()
    except Exception as exc:  # not CancelledError (a BaseException): cancelling the run still cancels the call
        if measured:
            result.errors[error_code(exc)] += 1
    else:
        if measured:
            result.ok += 1
            record_us(result.latency, (time.monotonic() - since) * 1e6)


async def open_loop(
    call: Call,
    rate: float,
    duration_s: float,
    warmup_s: float = 0.0,
    max_in_flight: int = 4096,
    drain_s: float = 10.0,
    start_at: float | None = None,
    window: Window | None = None,
) -> RunResult:
    """Send at `rate` per second for warmup_s + duration_s; latency from each request's intended send time.

    start_at: a time.monotonic() instant to begin at (lets several client processes start together).
    """
    if rate <= 0 or duration_s <= 0:
        raise ValueError("open loop needs rate > 0 and duration_s > 0")
    result = RunResult("open", rate, duration_s)
    total = round(rate * (warmup_s + duration_s))
    skip = round(rate * warmup_s)
    slots = asyncio.Semaphore(max_in_flight)
    pending: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    t0 = max(start_at or 0.0, time.monotonic())

    async def one(intended: float, measured: bool) -> None:
        try:
            await _timed_call(call, result, intended, measured)
        finally:
            slots.release()

    for i in range(total):
        intended = t0 + i * interval
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()  # a full window delays sending, and that delay counts in the latency
        measured = i >= skip
        if i == skip and window is not None:
            window.begin()
        if measured:
            result.sent += 1
            record_us(result.send_lag, (time.monotonic() - intended) * 1e6)
        task = asyncio.create_task(one(intended, measured))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await _drain(pending, drain_s, result)
    if window is not None:
        window.end()
        result.take_cpu(window)
    return result


async def closed_loop(
    call: Call,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.0,
    max_requests: int = 10_000_000,
    window: Window | None = None,
) -> RunResult:
    """`concurrency` callers, each sending its next request when the previous answers."""
    if concurrency < 1 or duration_s <= 0:
        raise ValueError("closed loop needs concurrency >= 1 and duration_s > 0")
    result = RunResult("closed", 0.0, duration_s, concurrency=concurrency)
    begin = time.monotonic()
    measure_from = begin + warmup_s
    stop_at = measure_from + duration_s
    budget = [max_requests]
    opened: list[bool] = []

    async def caller() -> None:
        while budget[0] > 0:
            start = time.monotonic()
            if start >= stop_at:
                return
            budget[0] -= 1
            measured = start >= measure_from
            if measured and window is not None and not opened:
                opened.append(True)
                window.begin()  # the first measured call opens the window
            result.sent += measured
            await _timed_call(call, result, start, measured)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    result.duration_s = max(min(time.monotonic(), stop_at) - measure_from, 1e-9)
    if window is not None:
        window.end()
        result.take_cpu(window)
    return result


async def _drain(pending: set[asyncio.Task[None]], drain_s: float, result: RunResult) -> None:
    if not pending:
        return
    _done, late = await asyncio.wait(set(pending), timeout=drain_s)
    for task in late:
        task.cancel()
    result.unfinished = len(late)
    if late:
        result.errors["UNFINISHED"] += len(late)
        await asyncio.wait(late, timeout=1.0)
