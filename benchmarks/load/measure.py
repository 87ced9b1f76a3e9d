"""One benchmark entry measured the same way whatever the server: closed loops at each concurrency, repeated;
the open-loop rate sweep to the p99 SLO, repeated; optionally one fixed-rate open-loop run; and, for V2
servers that allow it, perf_analyzer runs. Server and client CPU are read over every measured window.

The run's plan (benchmarks.suite.Plan) is read through `Settings`, so this module needs nothing above it.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from benchmarks.load.client import ClientPool, Job
from benchmarks.load.loadgen import RunResult
from benchmarks.load.perf_analyzer import PerfRun
from benchmarks.load.perf_analyzer import run as perf_run
from benchmarks.load.sweep import Sweep, find_max_rate
from benchmarks.load.wrk import WrkRun

Run = Callable[[float, float, float], RunResult]  # open loop: (rate, duration_s, warmup_s) -> what clients saw


class Settings(Protocol):
    """What a Runner (and an entry) reads of the run's plan."""

    @property
    def duration_s(self) -> float: ...  # each closed-loop run, after warm-up
    @property
    def warmup_s(self) -> float: ...
    @property
    def repeats(self) -> int: ...  # closed-loop runs per concurrency
    @property
    def concurrency(self) -> tuple[int, ...]: ...
    @property
    def sweep_repeats(self) -> int: ...
    @property
    def fixed_s(self) -> float: ...  # each fixed-rate open-loop run
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
    def perf_window_s(self) -> float: ...
    @property
    def perf_windows(self) -> int: ...
    @property
    def target(self) -> str | None: ...  # a running sibyl instead of local servers
    @property
    def compare_rows(self) -> tuple[int, ...]: ...  # rows per call of the comparison
    @property
    def perf_analyzer(self) -> bool: ...  # also drive V2 servers that allow it with perf_analyzer
    @property
    def workers(self) -> int: ...  # sibyl worker processes of a local server
    @property
    def quick(self) -> bool: ...  # a smoke run: stand-alone scenarios run shortened too


@dataclass
class Entry:
    """One row of the report: a server (with its settings) answering one request shape over one API."""

    name: str  # e.g. "sibyl-v2"
    kind: str  # "floor", "sibyl", "tuned", "peer" (comparison); "scenario"; "growth"; "limit"
    description: str
    section: str = "compare"  # "compare", "scenarios", "growth", "limits"
    rows: int = 1  # rows per call
    api: str = ""  # "v2", "native" or "" (in-process)
    client: str = "python"  # "python" (benchmarks.load.client), "perf_analyzer" or "wrk" (HTTP)
    params: dict[str, Any] = field(default_factory=dict)  # growth: {"dimension", "rows", "models", "workers"}
    closed: dict[int, list[RunResult]] = field(default_factory=dict)  # concurrency -> repeated runs
    sweeps: list[Sweep] = field(default_factory=list)
    fixed: RunResult | None = None  # one open-loop run at a fixed rate (latency CDF)
    perf: dict[int, list[PerfRun]] = field(default_factory=dict)  # perf_analyzer: concurrency -> runs
    http: dict[int, list[WrkRun]] = field(default_factory=dict)  # wrk (HTTP field): concurrency -> runs
    skipped: str | None = None  # why it did not run

    @property
    def label(self) -> str:
        via = " (perf_analyzer)" if self.client == "perf_analyzer" else ""
        return f"{self.name}{via} [{self.rows} row{'s' if self.rows != 1 else ''}]"


@dataclass(frozen=True)
class Lane:
    """An entry ready to measure: where its calls go and what they send."""

    entry: Entry
    target: str
    method: str
    payload: bytes
    pid: int | None  # the server's process (its tree's CPU is read); None: not read


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


def median_rps(runs: list[RunResult]) -> float:
    return statistics.median(r.achieved_rps for r in runs) if runs else 0.0


Started = TypeVar("Started")


def start_or_skip(
    stack: contextlib.ExitStack,
    runner: Runner,
    entries: list[Entry],
    what: str,
    server: Callable[[], contextlib.AbstractContextManager[Started]],
) -> Started | None:
    """A local server for these entries, or None with every entry skipped and why: a --target run (`what` runs
    locally only), a missing venv (LookupError), a server that did not start."""
    if runner.plan.target:
        reason = f"{what} run locally only (no --target)"
    else:
        try:
            return stack.enter_context(server())
        except LookupError as exc:
            reason = str(exc)
        except (RuntimeError, OSError) as exc:
            reason = f"server did not start: {exc}"
    for e in entries:
        runner.skip(e, reason)
    return None


class Runner:
    def __init__(self, plan: Settings, pool: ClientPool) -> None:
        self.plan = plan
        self.pool = pool
        self.entries: list[Entry] = []
        self.notes: dict[str, Any] = {}  # run-wide findings for the report (e.g. server memory)

    def cap(self, rate: float) -> float:
        return min(rate, self.plan.max_rps)

    def closed_run(self, target: str, method: str, payload: bytes, concurrency: int, pid: int | None) -> RunResult:
        p = self.plan
        job = Job(target, method, payload, "closed", 0.0, concurrency, p.duration_s, p.warmup_s, p.timeout_s)
        return self.pool.run(replace(job, server_pid=pid))

    def open_runs(self, target: str, method: str, payload: bytes, pid: int | None) -> Run:
        """Open-loop runs of one request against one method of a server, through the client pool."""
        p = self.plan

        def run(rate: float, duration_s: float, warmup_s: float) -> RunResult:
            job = Job(target, method, payload, "open", self.cap(rate), 1, duration_s, warmup_s, p.timeout_s)
            return self.pool.run(replace(job, server_pid=pid))

        return run

    def closed_rounds(self, lanes: list[Lane]) -> None:
        """The closed loops of several entries, interleaved: at each concurrency, repeat i runs every lane once
        (starting one lane further each round), so a machine whose speed drifts over minutes skews every entry
        alike and the ratios between them stay fair. Each lane's server must be up for the whole of it."""
        p = self.plan
        for c in p.concurrency:
            for lane in lanes:
                lane.entry.closed[c] = []
            for i in range(p.repeats):
                k = i % len(lanes) if lanes else 0
                for lane in lanes[k:] + lanes[:k]:
                    r = self.closed_run(lane.target, lane.method, lane.payload, c, lane.pid)
                    lane.entry.closed[c].append(r)
                    say(f"{lane.entry.label} closed c={c} #{i + 1}: {_line(r)}")

    def measure(
        self,
        entry: Entry,
        target: str,
        method: str,
        payload: bytes,
        pid: int | None,
        sweep: bool = True,
        fixed_rate: Callable[[Entry], float] | None = None,
        closed: bool = True,
    ) -> Entry:
        """Closed loops (every concurrency x repeats; closed=False: already run, by closed_rounds), then the
        sweeps, then the fixed-rate run; appended."""
        p = self.plan
        if closed:
            self.closed_rounds([Lane(entry, target, method, payload, pid)])
        if sweep:
            run = self.open_runs(target, method, payload, pid)
            for i in range(p.sweep_repeats):
                start = self.sweep_start(entry)
                say(f"{entry.label} sweep #{i + 1} from {start:g} rps (p99 SLO {p.slo_ms:g} ms)")
                entry.sweeps.append(
                    find_max_rate(
                        lambda rate, run=run: self._step(entry, run, rate),
                        start_rps=start,
                        slo_ms=p.slo_ms,
                        factor=p.sweep_factor,
                        max_steps=p.sweep_steps,
                        refine_steps=p.refine_steps,
                        max_rps=p.max_rps,
                    )
                )
                say(f"{entry.label} sweep #{i + 1}: max {entry.sweeps[-1].max_rps:g} rps at the SLO")
        if fixed_rate is not None:
            rate = self.cap(max(fixed_rate(entry), 1.0))
            say(f"{entry.label} fixed run at {rate:g} rps for {p.fixed_s:g} s")
            entry.fixed = self.open_runs(target, method, payload, pid)(rate, p.fixed_s, p.warmup_s)
        self.add(entry)
        return entry

    def perf_analyzer(
        self,
        entry: Entry,
        exe: str,
        target: str,
        model: str,
        tensors: dict[str, list[float]],
        pid: int | None,
        answered: Callable[[], int],
    ) -> Entry:
        """perf_analyzer at every concurrency x repeats, batch = the entry's rows; appended."""
        p = self.plan
        for c in p.concurrency:
            entry.perf[c] = []
            for i in range(p.repeats):
                r = perf_run(
                    exe,
                    target,
                    model,
                    tensors,
                    batch=entry.rows,
                    concurrency=c,
                    window_s=p.perf_window_s,
                    windows=p.perf_windows,
                    server_pid=pid,
                    answered=answered,
                )
                entry.perf[c].append(r)
                cpu = r.server_cpu_us_per_call
                say(
                    f"{entry.label} c={c} #{i + 1}: "
                    + (
                        r.error
                        or f"{r.requests_per_s:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
                        f"server {cpu or 0:,.0f} µs/call, client {r.client_cpu_us_per_call or 0:,.0f} µs/call"
                    )
                )
        self.add(entry)
        return entry

    def add(self, entry: Entry) -> None:
        """Record a finished (or skipped) entry; the suite's progress moves one step."""
        self.entries.append(entry)
        if PROGRESS is not None:
            PROGRESS.update(1, entry.label)

    def sweep_start(self, entry: Entry) -> float:
        """Half the closed-loop throughput at the highest concurrency: the sweep then needs few steps."""
        top = entry.closed.get(max(entry.closed)) if entry.closed else None
        guess = 0.5 * median_rps(top) if top else 100.0
        return self.cap(max(5.0, round(guess, -1) if guess >= 50 else round(guess)))

    def _step(self, entry: Entry, run: Run, rate: float) -> RunResult:
        r = run(rate, self.plan.step_s, self.plan.step_warmup_s)
        say(f"  {entry.label} @ {rate:g} rps: {_line(r)}")
        return r

    def skip(self, entry: Entry, reason: str) -> None:
        lines = [line.strip() for line in reason.splitlines() if line.strip()]
        if len(lines) > 1:  # a traceback from a server log: its first and last lines say enough
            reason = f"{lines[0]} ... {lines[-1]}"
        say(f"{entry.label}: skipped: {reason}")
        entry.skipped = reason
        self.add(entry)


def _line(r: RunResult) -> str:
    n = r.latency.get_total_count()
    p50 = r.latency.get_value_at_percentile(50) / 1000 if n else float("nan")
    p99 = r.latency.get_value_at_percentile(99) / 1000 if n else float("nan")
    cpu = r.server_cpu_us_per_call
    server = f", server {cpu:,.0f} µs/call" if cpu is not None else ""
    client = r.client_cpu_us_per_call
    return (
        f"{r.achieved_rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms{server}"
        f", client {client or 0:,.0f} µs/call, errors {sum(r.errors.values())}"
    )
