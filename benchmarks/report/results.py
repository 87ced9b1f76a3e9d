"""One benchmark entry in its JSON form (its object in results.json): every run's numbers, and for repeated
runs the median with the spread (min and max) of each figure."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.load.loadgen import RunResult
from benchmarks.load.measure import Entry
from benchmarks.load.perf_analyzer import PerfRun
from benchmarks.load.stats import cdf_points, summarize
from benchmarks.load.sweep import Sweep
from benchmarks.load.wrk import WrkRun

# Figures summarised as median (min-max) over the repeats.
RUN_FIGURES = (
    "achieved_rps",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "server_cpu_us_per_call",
    "client_cpu_us_per_call",
    "server_cores",
    "client_cores",
)
PERF_FIGURES = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_call", "client_cpu_us_per_call")
WRK_FIGURES = (
    "requests_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "server_cpu_us_per_call",
    "client_cpu_us_per_call",
    "errors",
)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def run_fields(r: RunResult) -> dict[str, Any]:
    s = summarize(r.latency)
    wall = r.cpu_wall_s or 0.0
    return {
        "mode": r.mode,
        "concurrency": r.concurrency,
        "target_rps": round(r.target_rps, 1),
        "achieved_rps": round(r.achieved_rps, 1),
        "requests": r.sent,
        "ok": r.ok,
        "p50_ms": s.p50_ms,
        "p90_ms": s.p90_ms,
        "p99_ms": s.p99_ms,
        "p999_ms": s.p999_ms,
        "max_ms": s.max_ms,
        "mean_ms": s.mean_ms,
        "errors": dict(sorted(r.errors.items())),
        "send_lag_p99_ms": summarize(r.send_lag).p99_ms,
        "server_cpu_us_per_call": _round(r.server_cpu_us_per_call, 1),
        "client_cpu_us_per_call": _round(r.client_cpu_us_per_call, 1),
        # Cores busy on average over the measured window: a client near 1.0 was the bottleneck.
        "server_cores": _round(r.server_cpu_s / wall, 3) if r.server_cpu_s is not None and wall else None,
        "client_cores": _round(r.client_cpu_s / wall, 3) if wall else None,
    }


def spread(values: list[float | None]) -> dict[str, float] | None:
    """median, min and max of the values that exist (None when none do)."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {"median": _round(statistics.median(got)), "min": _round(min(got)), "max": _round(max(got))}  # type: ignore[dict-item]


def repeated(runs: list[dict[str, Any]], figures: tuple[str, ...]) -> dict[str, Any]:
    return {"runs": runs, **{f: spread([r.get(f) for r in runs]) for f in figures}}


def perf_fields(r: PerfRun) -> dict[str, Any]:
    return {
        "concurrency": r.concurrency,
        "batch": r.batch,
        "requests_per_s": round(r.requests_per_s, 1),
        "p50_ms": round(r.p50_ms, 4),
        "p90_ms": round(r.p90_ms, 4),
        "p99_ms": round(r.p99_ms, 4),
        "calls": r.calls,
        "server_cpu_us_per_call": _round(r.server_cpu_us_per_call, 1),
        "client_cpu_us_per_call": _round(r.client_cpu_us_per_call, 1),
        "error": r.error,
    }


def wrk_fields(r: WrkRun) -> dict[str, Any]:
    return {
        "concurrency": r.concurrency,
        "requests": r.requests,
        "duration_s": round(r.duration_s, 3),
        "requests_per_s": round(r.requests_per_s, 1),
        "p50_ms": r.p50_ms,
        "p90_ms": r.p90_ms,
        "p99_ms": r.p99_ms,
        "p999_ms": r.p999_ms,
        "max_ms": r.max_ms,
        "mean_ms": r.mean_ms,
        "errors": r.error_count,
        "error_kinds": r.errors,
        "server_cpu_us_per_call": _round(r.server_cpu_us_per_call, 1),
        "client_cpu_us_per_call": _round(r.client_cpu_us_per_call, 1),
    }


def wrk_json(runs: dict[int, list[WrkRun]]) -> dict[str, Any]:
    """Per concurrency: every run, median (min-max) of each figure, failed runs' reasons, and the CDF of the run
    with the median p50 (for the per-protocol CDF plot)."""
    out: dict[str, Any] = {}
    for c, all_runs in runs.items():
        good = [r for r in all_runs if r.error is None]
        node = repeated([wrk_fields(r) for r in good], WRK_FIGURES) | {"failed": [r.error for r in all_runs if r.error]}
        if good:
            node["cdf"] = sorted(good, key=lambda r: r.p50_ms)[len(good) // 2].cdf
        out[str(c)] = node
    return out


def sweep_fields(sweeps: list[Sweep]) -> dict[str, Any]:
    """Every sweep's max rate; the steps of the median one (for the latency-vs-rate plot)."""
    ordered = sorted(sweeps, key=lambda s: s.max_rps)
    middle = ordered[len(ordered) // 2]
    return {
        "slo_ms": middle.slo_ms,
        "max_rps": spread([s.max_rps for s in sweeps]),
        "max_rps_runs": [round(s.max_rps, 1) for s in sweeps],
        "steps": [run_fields(step) for step in middle.steps],
    }


def entry_json(e: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": e.name,
        "label": e.label,
        "kind": e.kind,
        "section": e.section,
        "description": e.description,
        "rows": e.rows,
        "api": e.api,
        "client": e.client,
        **({"params": e.params} if e.params else {}),
    }
    if e.skipped is not None:
        return {**out, "skipped": e.skipped}
    if e.closed:
        out["closed"] = {str(c): repeated([run_fields(r) for r in runs], RUN_FIGURES) for c, runs in e.closed.items()}
    if e.sweeps:
        out["sweep"] = sweep_fields(e.sweeps)
    if e.fixed is not None:
        out["fixed"] = {**run_fields(e.fixed), "cdf": cdf_points(e.fixed.latency)}
    if e.perf:
        out["perf"] = {
            str(c): repeated([perf_fields(r) for r in runs if r.error is None], PERF_FIGURES)
            | {"errors": [r.error for r in runs if r.error]}
            for c, runs in e.perf.items()
        }
    if e.http:
        out["http"] = wrk_json(e.http)
    if e.closed and 1 in e.closed:  # the median c=1 run's latency distribution, for the CDF plot
        runs = sorted(e.closed[1], key=lambda r: r.latency.get_value_at_percentile(50))
        out["cdf_c1"] = cdf_points(runs[len(runs) // 2].latency)
    return out


def figure(e: dict[str, Any], where: str, key: str, stat: str = "median") -> float | None:
    """One summarised figure of an entry's JSON, e.g. figure(e, "closed.8", "server_cpu_us_per_call");
    None when the entry was skipped or lacks it."""
    node: Any = e
    for part in where.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    value = node.get(key) if isinstance(node, dict) else None
    if isinstance(value, dict):
        value = value.get(stat)
    return float(value) if isinstance(value, int | float) else None
