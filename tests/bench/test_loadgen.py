"""Open vs closed loop against a fake server that stalls once for 200 ms.

The open loop keeps sending on schedule and measures from the intended send time, so every request due
during the stall is late: the stall reaches p99. The closed loop stops sending while it waits and records
the stall once: only its max shows it (coordinated omission).
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from benchmarks.load.loadgen import closed_loop, error_code, open_loop

STALL_S = 0.2


class StallingServer:
    """Answers in ~1 ms; the `stall_at`-th call freezes the whole server for STALL_S."""

    def __init__(self, stall_at: int = 50) -> None:
        self.calls = 0
        self.stall_at = stall_at
        self.frozen_until = 0.0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.stall_at:
            self.frozen_until = time.monotonic() + STALL_S
        wait = max(self.frozen_until - time.monotonic(), 0.0)
        await asyncio.sleep(wait + 0.001)


async def test_open_loop_shows_a_stall_in_p99() -> None:
    result = await open_loop(StallingServer(), rate=200, duration_s=1.0)
    p99_ms = result.latency.get_value_at_percentile(99) / 1000
    assert result.ok == result.sent == 200
    assert p99_ms >= 100  # ~40 requests were due during the 200 ms stall
    assert result.latency.get_max_value() / 1000 >= 150


async def test_closed_loop_hides_the_same_stall_below_p99() -> None:
    result = await closed_loop(StallingServer(), concurrency=1, duration_s=1.0)
    p99_ms = result.latency.get_value_at_percentile(99) / 1000
    assert result.ok > 200
    assert p99_ms < 50  # only one request saw the stall
    assert result.latency.get_max_value() / 1000 >= 150


async def test_warmup_is_sent_but_not_recorded() -> None:
    server = StallingServer(stall_at=10**9)
    result = await open_loop(server, rate=100, duration_s=0.5, warmup_s=0.3)
    assert server.calls == 80
    assert result.sent == result.ok == result.latency.get_total_count() == 50


async def test_errors_are_counted_by_grpc_code_and_not_timed() -> None:
    n = 0

    async def flaky() -> None:
        nonlocal n
        n += 1
        if n % 2:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())

    result = await open_loop(flaky, rate=100, duration_s=0.2)
    assert dict(result.errors) == {"UNAVAILABLE": 10}
    assert result.ok == result.latency.get_total_count() == 10


async def test_calls_still_running_at_the_drain_timeout_are_unfinished() -> None:
    async def hang() -> None:
        await asyncio.sleep(30)

    result = await open_loop(hang, rate=50, duration_s=0.1, drain_s=0.2)
    assert result.unfinished == 5 and result.errors["UNFINISHED"] == 5 and result.ok == 0


def test_error_code_of_a_plain_exception_names_its_type() -> None:
    assert error_code(ValueError("x")) == "CLIENT_ValueError"


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        await open_loop(StallingServer(), rate=0, duration_s=1)
    with pytest.raises(ValueError, match="concurrency"):
        await closed_loop(StallingServer(), concurrency=0, duration_s=1)
