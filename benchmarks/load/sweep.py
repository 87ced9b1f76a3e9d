"""Rate sweep: the highest offered rate whose open-loop p99 stays within the SLO (without errors or backlog)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.load.loadgen import RunResult


@dataclass
class Sweep:
    slo_ms: float
    steps: list[RunResult] = field(default_factory=list)
    max_rps: float = 0.0  # highest offered rate that held; 0 if none did

    def best(self) -> RunResult | None:
        held = [r for r in self.steps if holds(r, self.slo_ms)]
        return max(held, key=lambda r: r.target_rps) if held else None


def holds(r: RunResult, slo_ms: float, max_error_ratio: float = 0.001, min_achieved: float = 0.95) -> bool:
    """p99 within the SLO, (almost) no errors, and the server kept up with the offered rate."""
    if r.sent == 0 or r.latency.get_total_count() == 0:
        return False
    errors = sum(r.errors.values())
    return (
        r.latency.get_value_at_percentile(99) / 1000 <= slo_ms
        and errors <= max_error_ratio * r.sent
        and r.ok >= min_achieved * r.sent
        and r.achieved_rps >= min_achieved * r.target_rps
    )


def find_max_rate(
    run_at: Callable[[float], RunResult],
    start_rps: float,
    slo_ms: float,
    factor: float = 1.5,
    max_steps: int = 8,
    refine_steps: int = 2,
    max_rps: float = 50_000,
    min_rps: float = 5,
) -> Sweep:
    """Raise the rate by `factor` until a step misses the SLO, then bisect between the last good and first bad.
    When the first rate already misses, lower it by `factor` instead (not below min_rps).

    Bounded: at most max_steps + refine_steps runs, never above max_rps.
    """
    if start_rps <= 0 or factor <= 1:
        raise ValueError("sweep needs start_rps > 0 and factor > 1")
    sweep = Sweep(slo_ms)

    def step(rate: float) -> bool:
        r = run_at(rate)
        sweep.steps.append(r)
        return holds(r, slo_ms)

    good, bad = 0.0, 0.0
    rate = start_rps
    if not step(rate):  # too much already: step down until one holds (or min_rps)
        bad = rate
        for _ in range(max_steps - 1):
            rate = round(rate / factor, 1)
            if rate < min_rps:
                break
            if step(rate):
                good = rate
                break
            bad = rate
    else:
        good = rate
        for _ in range(max_steps - 1):
            if rate >= max_rps:
                break
            rate = min(rate * factor, max_rps)
            if not step(rate):
                bad = rate
                break
            good = rate
    if bad and good:
        for _ in range(refine_steps):
            mid = round((good + bad) / 2)
            if mid <= good or mid >= bad:
                break
            good, bad = (mid, bad) if step(mid) else (good, mid)
    sweep.max_rps = good
    sweep.steps.sort(key=lambda r: r.target_rps)
    return sweep
