"""One benchmark run: the limits, then every scenario (sweep + fixed-rate run), then the peers; then the report.

The orchestrator: it may import every subpackage (load, scenarios, peers, report); none of them imports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.load import measure
from benchmarks.load.client import ClientPool
from benchmarks.load.measure import Runner, say
from benchmarks.peers.entries import PEERS as PEER_ENTRIES
from benchmarks.peers.entries import run_peers
from benchmarks.report import document, plots, targets
from benchmarks.report.machine import machine_info
from benchmarks.report.results import entry_json
from benchmarks.scenarios.definitions import SCENARIOS
from benchmarks.scenarios.entries import LIMITS, run_limits, run_scenarios
from sibyl.cli.progress import Progress

PEERS = tuple(PEER_ENTRIES)
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


def _run_all(plan: Plan, runner: Runner) -> None:
    wanted = set(plan.only)
    run_limits(plan, runner, wanted)
    run_scenarios(plan, runner, wanted)
    run_peers(plan, runner, [p for p in PEERS if p in wanted])


def run_suite(plan: Plan) -> dict[str, Any]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    total = len(plan.only)
    measure.PROGRESS = bar = Progress(
        "bench",
        unit="entries",
        total=total,
        every_s=0.0,
        line=lambda n, _, note: f"[bench] {n}/{total} entries done{note}",
    )
    try:
        with ClientPool(plan.clients) as pool:
            runner = Runner(plan, pool)
            _run_all(plan, runner)
    finally:
        bar.close()
        measure.PROGRESS = None
    entries = [entry_json(e) for e in runner.entries]
    doc = {
        "started_at": started,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "machine": machine_info(),
        "settings": plan.settings(),
        "scenarios": entries,
        "targets": targets.evaluate({e["name"]: e for e in entries}),
    }
    files = document.write(doc, plan.out) + plots.write(doc, plan.out)
    say(f"done in {doc['elapsed_s']:g} s: " + ", ".join(str(f) for f in files))
    return doc
