"""One benchmark run: the in-process floor, the comparison (echo, sibyl, its variants, the peers, perf_analyzer),
the HTTP field (sibyl's V2 REST and the HTTP peers under wrk), the scenarios, interference (big calls beside small
ones), then how cost grows; then the report.

The orchestrator: it may import every subpackage (load, scenarios, peers, report); none of them imports it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.load import measure, perf_analyzer
from benchmarks.load import workload as w
from benchmarks.load.client import ClientPool
from benchmarks.load.measure import Runner, say
from benchmarks.peers.compare import GROUPS as COMPARE
from benchmarks.peers.compare import run_compare
from benchmarks.peers.entries import PEERS as PEER_ENTRIES
from benchmarks.peers.http_entries import HTTP_NAMES
from benchmarks.peers.http_field import run_http_field
from benchmarks.report import document, plots, tail_targets, targets
from benchmarks.report.machine import machine_info
from benchmarks.report.results import entry_json
from benchmarks.scenarios.definitions import SCENARIOS
from benchmarks.scenarios.entries import LIMITS, run_limits, run_scenarios
from benchmarks.scenarios.growth import DIMENSIONS, run_growth
from benchmarks.scenarios.interference import SUITE_NAME as INTERFERENCE
from benchmarks.scenarios.interference import run_in_suite as run_interference
from sibyl.cli.progress import Progress

PEERS = (*PEER_ENTRIES, *HTTP_NAMES)  # what --with-peers sets up; the HTTP field's sibyl row needs wrk, like them
ALL_NAMES = (*LIMITS, *COMPARE, *HTTP_NAMES, *(s.name for s in SCENARIOS), INTERFERENCE, *DIMENSIONS)


@dataclass(frozen=True)
class Plan:
    out: Path
    quick: bool = False
    duration_s: float = 5.0  # each closed-loop run, after warm-up
    warmup_s: float = 1.0
    repeats: int = 3  # closed-loop (and perf_analyzer) runs per concurrency
    concurrency: tuple[int, ...] = (1, 8)
    sweep_repeats: int = 3
    fixed_s: float = 20.0  # each fixed-rate open-loop run (scenarios)
    step_s: float = 5.0  # each sweep step, after its own warm-up
    step_warmup_s: float = 1.0
    slo_ms: float = 10.0
    sweep_factor: float = 1.5
    sweep_steps: int = 8
    refine_steps: int = 2
    max_rps: float = 50_000.0
    perf_analyzer: bool = True
    perf_window_s: float = 2.0
    perf_windows: int = 3
    compare_rows: tuple[int, ...] = (1, 100)
    growth_rows: tuple[int, ...] = (1, 10, 100, 1000)
    growth_models: tuple[int, ...] = (1, 2, 3, 4)
    growth_workers: tuple[int, ...] = (1, 2)
    clients: int = 1
    workers: int = 1
    timeout_s: float = 5.0
    target: str | None = None  # a running sibyl to benchmark instead of local servers
    only: tuple[str, ...] = field(default=ALL_NAMES)

    @classmethod
    def quick_plan(cls, out: Path, **kw: Any) -> Plan:
        base: dict[str, Any] = {
            "duration_s": 1.0,
            "warmup_s": 0.3,
            "repeats": 1,
            "sweep_repeats": 1,
            "fixed_s": 2.0,
            "step_s": 1.0,
            "step_warmup_s": 0.3,
            "sweep_factor": 2.0,
            "sweep_steps": 4,
            "refine_steps": 1,
            "perf_window_s": 0.5,
            "growth_rows": (1, 100),
            "growth_models": (1, 2),
        }
        return cls(out=out, quick=True, **{**base, **kw})

    def settings(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "repeats": self.repeats,
            "concurrency": list(self.concurrency),
            "sweep_repeats": self.sweep_repeats,
            "sweep_step_s": self.step_s,
            "fixed_s": self.fixed_s,
            "slo_ms": self.slo_ms,
            "perf_analyzer": self.perf_analyzer,
            "compare_rows": list(self.compare_rows),
            "growth": {
                "rows": list(self.growth_rows),
                "models": list(self.growth_models),
                "workers": list(self.growth_workers),
            },
            "client_processes": self.clients,
            "server_workers": self.workers,
            "target": self.target or "local subprocesses on 127.0.0.1",
        }


def _run_all(plan: Plan, runner: Runner, store: Path) -> None:
    wanted = set(plan.only)
    exe = perf_analyzer.binary() if plan.perf_analyzer else None
    run_limits(plan, runner, wanted, plan.compare_rows)
    run_compare(plan, runner, wanted, store, exe)
    run_http_field(plan, runner, wanted, store)
    run_scenarios(plan, runner, wanted, store)
    run_interference(plan, runner, wanted)
    axes = {"rows": plan.growth_rows, "models": plan.growth_models, "workers": plan.growth_workers}
    run_growth(plan, runner, wanted, store, axes)


def run_suite(plan: Plan) -> dict[str, Any]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    machine = machine_info()  # before the load: the load average says how busy the machine was
    measure.PROGRESS = bar = Progress(
        "bench", unit="entries", every_s=0.0, line=lambda n, _, note: f"[bench] {n} entries done{note}"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp, ClientPool(plan.clients) as pool:
            runner = Runner(plan, pool)
            _run_all(plan, runner, w.make_store(Path(tmp)))
    finally:
        bar.close()
        measure.PROGRESS = None
    entries = [entry_json(e) for e in runner.entries]
    doc = {
        "started_at": started,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "machine": machine,
        "settings": plan.settings(),
        "entries": entries,
        "notes": runner.notes,
        "targets": targets.evaluate(entries, runner.notes)
        + tail_targets.evaluate(entries, runner.notes, tail_targets.load_baseline()),
    }
    files = document.write(doc, plan.out) + plots.write(doc, plan.out)
    say(f"done in {doc['elapsed_s']:g} s: " + ", ".join(str(f) for f in files))
    return doc
