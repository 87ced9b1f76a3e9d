"""One benchmark entry (scenario, baseline or peer) in its JSON form: its row of results.json."""

from __future__ import annotations

from typing import Any

from benchmarks.load.loadgen import RunResult
from benchmarks.load.measure import Entry
from benchmarks.load.stats import cdf_points, summarize


def run_fields(r: RunResult) -> dict[str, Any]:
    s = summarize(r.latency)
    return {
        "mode": r.mode,
        "target_rps": round(r.target_rps, 1),
        "achieved_rps": round(r.achieved_rps, 1),
        "requests": r.sent,
        "p50_ms": s.p50_ms,
        "p90_ms": s.p90_ms,
        "p99_ms": s.p99_ms,
        "p999_ms": s.p999_ms,
        "max_ms": s.max_ms,
        "mean_ms": s.mean_ms,
        "errors": dict(sorted(r.errors.items())),
        "send_lag_p99_ms": summarize(r.send_lag).p99_ms,
    }


def entry_json(e: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"name": e.name, "kind": e.kind, "description": e.description}
    if e.skipped is not None:
        return {**out, "skipped": e.skipped}
    if e.run is not None:
        out.update(run_fields(e.run))
        out["cdf"] = cdf_points(e.run.latency)
    if e.sweep is not None:
        out["slo_ms"] = e.sweep.slo_ms
        out["max_rps_at_slo"] = round(e.sweep.max_rps, 1)
        out["sweep"] = [run_fields(step) for step in e.sweep.steps]
    return out
