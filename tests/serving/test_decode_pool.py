"""serving.decode_pool with real spawned processes: the thread while the pool starts, deadlines, close."""

from __future__ import annotations

import asyncio
import time

import pytest

from sibyl.errors import DeadlineExceeded
from sibyl.serving.decode_pool import DecodePool


async def started(pool: DecodePool) -> None:
    assert await pool.run(abs, (-1,), lambda: 1, None) == 1  # in a thread: the pool starts meanwhile
    for _ in range(1200):
        if pool.ready:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the decode processes did not start in 60 s")


async def test_runs_in_a_process_once_up_and_past_a_deadline_says_so() -> None:
    pool = DecodePool(processes=1, min_bytes=100)
    try:
        assert not pool.takes(100) and pool.takes(101)
        await started(pool)
        assert await pool.run(abs, (-3,), lambda: -1, None) == 3
        with pytest.raises(DeadlineExceeded, match="while decoding"):
            await pool.run(time.sleep, (5,), lambda: None, time.monotonic() + 0.2)
    finally:
        pool.close()
    assert not pool.takes(1 << 20)


async def test_errors_raised_in_the_process_reach_the_caller() -> None:
    pool = DecodePool(processes=1, min_bytes=0)
    try:
        await started(pool)
        with pytest.raises(ValueError):
            await pool.run(int, ("not a number",), lambda: 0, None)
    finally:
        pool.close()


def test_no_processes_means_never() -> None:
    assert not DecodePool(processes=0, min_bytes=0).takes(1 << 30)
