"""One benchmark entry measured: a rate sweep, then one fixed-rate run, through the run's client pool.

Scenario and peer entries differ only in how they call their server; both hand a `run(rate, duration_s,
warmup_s)` to Runner.measure_with and get an Entry back. The run's plan (benchmarks.suite.Plan) is read
through `Settings`, so this module needs nothing above it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from benchmarks.load.client import ClientPool, Job
from benchmarks.load.loadgen import RunResult
from benchmarks.load.sweep import Sweep, find_max_rate

Run = Callable[[float, float, float], RunResult]  # (rate, duration_s, warmup_s) -> what the clients saw


class Settings(Protocol):
    """What a Runner (and an entry) reads of the run's plan."""

    @property
    def duration_s(self) -> float: ...
    @property
    def warmup_s(self) -> float: ...
    @property
    def step_s(self) -> float: ...
    @property
    def step_warmup_s(self) -> float: ...
    @property
    def slo_ms(self) -> float: ...
    @property
    def sweep_factor(self) -> float: ...
    @property
    def sweep_steps(self) -> int: ...
    @property
    def refine_steps(self) -> int: ...
    @property
    def max_rps(self) -> float: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def target(self) -> str | None: ...  # a running sibyl instead of local servers
    @property
    def workers(self) -> int: ...  # sibyl worker processes of a local server


@dataclass
class Entry:
    name: str
    kind: str  # "sibyl", "limit" or "peer"
    description: str
    run: RunResult | None = None  # the fixed-rate measurement (or the in-process loop)
    sweep: Sweep | None = None
    skipped: str | None = None  # why it did not run


class Bar(Protocol):
    """The suite's progress (sibyl.cli.progress.Progress): a bar on a terminal, else plain lines."""

    def update(self, step: int = 1, note: str = "") -> None: ...
    def write(self, text: str) -> None: ...


PROGRESS: Bar | None = None  # set by the suite while it runs


def say(text: str) -> None:
    if PROGRESS is not None:
        PROGRESS.write(f"[bench] {text}")  # above the bar, not through it
    else:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, plan: Settings, pool: ClientPool) -> None:
        self.plan = plan
        self.pool = pool
        self.entries: list[Entry] = []
        self.rates: dict[str, float] = {}  # fixed-run rate per entry, for runs that must match it

    def cap(self, rate: float) -> float:
        return min(rate, self.plan.max_rps)

    def job(self, target: str, payload: bytes, rate: float, duration_s: float, warmup_s: float, method: str) -> Job:
        p = self.plan
        return Job(target, method, payload, "open", self.cap(rate), 1, duration_s, warmup_s, p.timeout_s)

    def runs_of(self, target: str, payload: bytes, method: str) -> Run:
        """Open-loop runs of one request against one method of a server, through the client pool."""
        return lambda rate, d, wu: self.pool.run(self.job(target, payload, rate, d, wu, method))

    def measure_with(
        self,
        name: str,
        kind: str,
        description: str,
        run: Run,
        fixed_rate: Callable[[Sweep], float],
        sweep_start: float = 100.0,
    ) -> Entry:
        p = self.plan
        say(f"{name}: sweeping from {self.cap(sweep_start):g} rps (p99 SLO {p.slo_ms:g} ms)")
        sweep = find_max_rate(
            lambda rate: self._step(name, run, rate),
            start_rps=self.cap(sweep_start),
            slo_ms=p.slo_ms,
            factor=p.sweep_factor,
            max_steps=p.sweep_steps,
            refine_steps=p.refine_steps,
            max_rps=p.max_rps,
        )
        rate = self.cap(max(fixed_rate(sweep), 1.0))
        self.rates[name] = rate
        say(f"{name}: max {sweep.max_rps:g} rps at the SLO; fixed run at {rate:g} rps for {p.duration_s:g} s")
        entry = Entry(name, kind, description, run(rate, p.duration_s, p.warmup_s), sweep)
        self.add(entry)
        return entry

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        if PROGRESS is not None:
            PROGRESS.update(1, entry.name)

    def _step(self, name: str, run: Run, rate: float) -> RunResult:
        r = run(rate, self.plan.step_s, self.plan.step_warmup_s)
        p99 = r.latency.get_value_at_percentile(99) / 1000 if r.latency.get_total_count() else float("nan")
        say(
            f"  {name} @ {rate:g} rps: achieved {r.achieved_rps:.0f}, p99 {p99:.2f} ms, errors {sum(r.errors.values())}"
        )
        return r

    def skip(self, name: str, kind: str, description: str, reason: str) -> None:
        lines = [line.strip() for line in reason.splitlines() if line.strip()]
        if len(lines) > 1:  # a traceback from a server log: its first and last lines say enough
            reason = f"{lines[0]} ... {lines[-1]}"
        say(f"{name}: skipped: {reason}")
        self.add(Entry(name, kind, description, skipped=reason))
