"""One benchmark run: baselines, then every scenario (sweep + fixed-rate run), then the peers; then the report."""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from benchmarks import plots, report, targets
from benchmarks import workload as w
from benchmarks.client import ClientPool, Job
from benchmarks.inprocess import run_inprocess
from benchmarks.loadgen import RunResult
from benchmarks.process import ServerError
from benchmarks.results import Entry, entry_json
from benchmarks.scenarios import PREDICT, SCENARIOS, Scenario, check_response
from benchmarks.servers import echo_server, sibyl_server
from benchmarks.sweep import Sweep, find_max_rate

log = logging.getLogger("benchmarks")
PEERS = ("peer-mlserver", "peer-triton")
LIMITS = ("limit-inprocess", "limit-grpc-echo")
ALL_NAMES = (*LIMITS, *(s.name for s in SCENARIOS), *PEERS)


@dataclass(frozen=True)
class Plan:
    out: Path
    quick: bool = False
    duration_s: float = 20.0  # each fixed-rate run, after warm-up
    warmup_s: float = 3.0
    step_s: float = 8.0  # each sweep step, after its own warm-up
    step_warmup_s: float = 1.0
    slo_ms: float = 10.0
    sweep_factor: float = 1.5
    sweep_steps: int = 10
    refine_steps: int = 2
    max_rps: float = 50_000.0
    clients: int = 1
    workers: int = 1
    timeout_s: float = 5.0
    target: str | None = None  # a running sibyl to benchmark instead of local servers
    only: tuple[str, ...] = ALL_NAMES

    @classmethod
    def quick_plan(cls, out: Path, **kw: Any) -> Plan:
        base = {"duration_s": 3.0, "warmup_s": 1.0, "step_s": 2.0, "step_warmup_s": 0.5, "sweep_factor": 2.0}
        base.update({"sweep_steps": 5, "refine_steps": 1})
        return cls(out=out, quick=True, **{**base, **kw})

    def settings(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "sweep_step_s": self.step_s,
            "slo_ms": self.slo_ms,
            "client_processes": self.clients,
            "server_workers": self.workers,
            "target": self.target or "local subprocesses on 127.0.0.1",
        }


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, plan: Plan, pool: ClientPool) -> None:
        self.plan = plan
        self.pool = pool
        self.entries: list[Entry] = []
        self.rates: dict[str, float] = {}  # fixed-run rate per scenario, for runs that must match it

    def cap(self, rate: float) -> float:
        return min(rate, self.plan.max_rps)

    def job(self, target: str, payload: bytes, rate: float, duration_s: float, warmup_s: float, method: str) -> Job:
        p = self.plan
        return Job(target, method, payload, "open", self.cap(rate), 1, duration_s, warmup_s, p.timeout_s)

    def measure_with(
        self,
        name: str,
        kind: str,
        description: str,
        run: Callable[[float, float, float], RunResult],
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
        self.entries.append(entry)
        return entry

    def _step(self, name: str, run: Callable[[float, float, float], RunResult], rate: float) -> RunResult:
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
        self.entries.append(Entry(name, kind, description, skipped=reason))

    # ---- the entries
    def limit_inprocess(self) -> None:
        m = w.manifest(w.PRIMARY)
        say("limit-inprocess: onnxruntime session.run on 1 row, back to back")
        r = run_inprocess(w.model_path(w.PRIMARY), w.sample_matrix(m.columns, 1), self.plan.duration_s, 0.5)
        self.entries.append(
            Entry("limit-inprocess", "limit", "onnxruntime called directly: gbdt@1, the single-row input (floor)", r)
        )

    def limit_echo(self) -> None:
        desc = (
            "grpc.aio server under uvloop answering a fixed PredictResponse to the single-row request (transport floor)"
        )
        payload = SCENARIOS[0].payload()
        with echo_server() as server:
            run = self._runner(server.target, payload)
            start = SCENARIOS[0].sweep_start_rps
            self.measure_with("limit-grpc-echo", "limit", desc, run, lambda _: SCENARIOS[0].ref_rps, start)

    def scenario(self, s: Scenario, target: str) -> None:
        payload = s.payload()
        problem = self._check(s, target, payload)
        if problem:
            self.skip(s.name, "sibyl", s.description, f"check failed: {problem}")
            return

        def fixed(sweep: Sweep) -> float:
            if s.name == "redis-fill" and sweep.max_rps:
                return sweep.max_rps / 2
            if s.name == "shadow-log" and "redis-fill" in self.rates:
                return self.rates["redis-fill"]
            return s.ref_rps

        run = self._runner(target, payload)
        self.measure_with(s.name, "sibyl", s.description, run, fixed, sweep_start=s.sweep_start_rps)

    def _runner(self, target: str, payload: bytes) -> Callable[[float, float, float], RunResult]:
        return lambda rate, d, wu: self.pool.run(self.job(target, payload, rate, d, wu, PREDICT))

    def _check(self, s: Scenario, target: str, payload: bytes, tries: int = 5) -> str | None:
        """A few calls first: the very first may still be connecting to Redis and answer with defaults."""
        problem: str | None = "no answer"
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(PREDICT)
            for _ in range(tries):
                try:
                    problem = check_response(s, call(payload, timeout=10.0))
                except grpc.RpcError as exc:
                    problem = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
                if problem is None:
                    return None
                time.sleep(0.1)
        return problem


@contextlib.contextmanager
def _target_for(plan: Plan, group: str, store: Path) -> Iterator[str]:
    if plan.target:
        yield plan.target
        return
    with sibyl_server(group, store, plan.workers) as server:
        yield server.target


def _run_all(plan: Plan, runner: Runner) -> None:
    wanted = set(plan.only)
    if "limit-inprocess" in wanted:
        runner.limit_inprocess()
    if "limit-grpc-echo" in wanted:
        if plan.target:
            runner.skip("limit-grpc-echo", "limit", "transport floor", "runs locally only (no --target)")
        else:
            runner.limit_echo()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = w.make_store(Path(tmp))
        for group in ("plain", "redis", "redis-kafka"):
            todo = [s for s in SCENARIOS if s.server == group and s.name in wanted]
            if not todo:
                continue
            try:
                with _target_for(plan, group, store) as target:
                    for s in todo:
                        runner.scenario(s, target)
            except (ServerError, RuntimeError) as exc:
                for s in todo:
                    if s.name not in {e.name for e in runner.entries}:
                        runner.skip(s.name, "sibyl", s.description, f"server did not start: {exc}")
    from benchmarks.peers import run_peers

    run_peers(plan, runner, [p for p in PEERS if p in wanted])


def run_suite(plan: Plan) -> dict[str, Any]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    with ClientPool(plan.clients) as pool:
        runner = Runner(plan, pool)
        _run_all(plan, runner)
    entries = [entry_json(e) for e in runner.entries]
    from benchmarks.machine import machine_info

    doc = {
        "started_at": started,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "machine": machine_info(),
        "settings": plan.settings(),
        "scenarios": entries,
        "targets": targets.evaluate({e["name"]: e for e in entries}),
    }
    files = report.write(doc, plan.out) + plots.write(doc, plan.out)
    say(f"done in {doc['elapsed_s']:g} s: " + ", ".join(str(f) for f in files))
    return doc
