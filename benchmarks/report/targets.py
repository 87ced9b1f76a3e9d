"""The project's latency targets, checked against one run's results.json entries. Misses are reported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Entries = dict[str, dict[str, Any]]


def _get(entries: Entries, name: str, key: str) -> float | None:
    e = entries.get(name)
    if e is None or "skipped" in e or key not in e:
        return None
    value = e[key]
    return float(value) if isinstance(value, int | float) else None


def _target(name: str, text: str, value: float | None, limit: float | None, unit: str, why_na: str) -> dict[str, Any]:
    if value is None or limit is None:
        return {"name": name, "text": text, "status": "n/a", "detail": why_na}
    ok = value <= limit if unit != "x" else value >= limit
    shown = f"{value:.3g} {unit}".strip() if unit != "x" else f"{value:.3g} rps"
    bound = f"{'<=' if unit != 'x' else '>='} {limit:.3g} {unit if unit != 'x' else 'rps'}"
    return {
        "name": name,
        "text": text,
        "status": "met" if ok else "MISSED",
        "value": round(value, 4),
        "limit": round(limit, 4),
        "detail": f"{shown} {bound}",
    }


def evaluate(entries: Entries) -> list[dict[str, Any]]:
    g: Callable[[str, str], float | None] = lambda n, k: _get(entries, n, k)  # noqa: E731
    echo, inproc = g("limit-grpc-echo", "p50_ms"), g("limit-inprocess", "p50_ms")
    floor = 1.3 * (echo + inproc) if echo is not None and inproc is not None else None
    single_max = g("single-row", "max_rps_at_slo")
    mlserver, triton = g("peer-mlserver", "max_rps_at_slo"), g("peer-triton", "max_rps_at_slo")
    redis_p99 = g("redis-fill", "p99_ms")
    out = [
        _target(
            "single-row-p50",
            "single-row p50 <= 1.3 x (limit-grpc-echo p50 + limit-inprocess p50)",
            g("single-row", "p50_ms"),
            floor,
            "ms",
            "needs single-row, limit-grpc-echo and limit-inprocess",
        ),
        _target("single-row-p99", "single-row p99 <= 2 ms", g("single-row", "p99_ms"), 2.0, "ms", "needs single-row"),
        _target(
            "redis-fill-p99",
            "redis-fill p99 <= 6 ms at half its max sustainable rate",
            redis_p99,
            6.0,
            "ms",
            "needs redis-fill",
        ),
        _target(
            "vs-mlserver",
            "single-row max rate at p99 <= SLO >= 2 x peer-mlserver",
            single_max,
            2 * mlserver if mlserver is not None else None,
            "x",
            "needs single-row and peer-mlserver (install the peer: see benchmarks/README.md)",
        ),
        _target(
            "vs-triton",
            "single-row max rate at p99 <= SLO >= peer-triton",
            single_max,
            triton,
            "x",
            "needs single-row and peer-triton (install the peer: see benchmarks/README.md)",
        ),
        _target(
            "shadow-log-p99",
            "shadow-log p99 <= 1.1 x redis-fill p99 at the same rate",
            g("shadow-log", "p99_ms"),
            1.1 * redis_p99 if redis_p99 is not None else None,
            "ms",
            "needs shadow-log and redis-fill",
        ),
    ]
    for t in out[3:5]:  # 0 >= 2 x 0 says nothing: neither server held the SLO at any swept rate
        if t["status"] == "met" and t["value"] == 0:
            t["status"] = "n/a"
            t["detail"] += " (neither held the SLO at any swept rate: inconclusive)"
    if g("redis-fill", "max_rps_at_slo") == 0 and redis_p99 is not None:
        rate = g("redis-fill", "target_rps")
        out[2]["detail"] += f" (no swept rate held the SLO: measured at {rate:g} rps instead of half the max)"
    return out
