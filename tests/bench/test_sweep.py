"""The rate sweep against a fake server whose p99 jumps past the SLO above a known capacity."""

from __future__ import annotations

import pytest

from benchmarks.load.loadgen import RunResult
from benchmarks.load.stats import record_us
from benchmarks.load.sweep import find_max_rate, holds


def fake_run(capacity: float, calls: list[float]) -> object:
    def run_at(rate: float) -> RunResult:
        calls.append(rate)
        r = RunResult("open", rate, 1.0)
        latency_us = 1_000 if rate <= capacity else 50_000
        for _ in range(int(rate)):
            record_us(r.latency, latency_us)
        r.sent = r.ok = int(rate)
        return r

    return run_at


def test_sweep_finds_the_capacity_within_the_bisection() -> None:
    calls: list[float] = []
    sweep = find_max_rate(fake_run(700, calls), start_rps=100, slo_ms=10, factor=2, refine_steps=3)
    assert calls[:4] == [100, 200, 400, 800]
    assert 600 <= sweep.max_rps <= 700
    assert len(calls) == 7
    best = sweep.best()
    assert best is not None and best.target_rps == sweep.max_rps
    assert [r.target_rps for r in sweep.steps] == sorted(calls)


def test_sweep_steps_down_when_the_first_rate_misses() -> None:
    calls: list[float] = []
    sweep = find_max_rate(fake_run(30, calls), start_rps=100, slo_ms=10, factor=2, refine_steps=0)
    assert calls == [100, 50, 25] and sweep.max_rps == 25


def test_sweep_reports_zero_when_nothing_down_to_min_rps_holds() -> None:
    calls: list[float] = []
    sweep = find_max_rate(fake_run(1, calls), start_rps=100, slo_ms=10, factor=2, min_rps=20)
    assert sweep.max_rps == 0 and calls == [100, 50, 25] and sweep.best() is None


def test_sweep_is_bounded_by_max_rps_and_max_steps() -> None:
    calls: list[float] = []
    sweep = find_max_rate(fake_run(10**9, calls), start_rps=100, slo_ms=10, factor=2, max_steps=20, max_rps=1000)
    assert calls == [100, 200, 400, 800, 1000] and sweep.max_rps == 1000


def test_errors_or_a_backlog_fail_a_step() -> None:
    r = RunResult("open", 100, 1.0)
    for _ in range(100):
        record_us(r.latency, 500)
    r.sent = r.ok = 100
    assert holds(r, 10)
    r.errors["UNAVAILABLE"] = 1
    assert not holds(r, 10)
    r.errors.clear()
    r.ok = 50  # half answered within the window: the server did not keep up
    assert not holds(r, 10)


def test_bad_sweep_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="factor"):
        find_max_rate(fake_run(1, []), start_rps=10, slo_ms=10, factor=1)
