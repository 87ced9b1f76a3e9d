"""Issue 16's targets (and issue 33's HTTP tail target; its others are in tail_targets.py, which builds on the
helpers here), checked against one run's results.json entries (default settings, file log on).

CPU per call is the server tree's, from the closed loop at the highest concurrency (8 by default), median of
the repeats; latency targets use the closed loop at concurrency 1. A target whose entries are missing or
skipped is "n/a" with what it needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks.report.results import figure

Entries = list[dict[str, Any]]
MB = 1024 * 1024


def find(entries: Entries, name: str, rows: int, client: str = "python") -> dict[str, Any] | None:
    for e in entries:
        if e["name"] == name and e["rows"] == rows and e.get("client", "python") == client and "skipped" not in e:
            return e
    return None


def top_concurrency(e: dict[str, Any] | None) -> str:
    closed = (e or {}).get("closed") or {}
    return max(closed, key=int) if closed else "8"


def cpu(entries: Entries, name: str, rows: int) -> float | None:
    e = find(entries, name, rows)
    return figure(e, f"closed.{top_concurrency(e)}", "server_cpu_us_per_call") if e else None


def target(
    name: str, text: str, value: float | None, limit: float | None, op: str, unit: str, needs: str
) -> dict[str, Any]:
    if value is None or limit is None:
        return {"name": name, "text": text, "status": "n/a", "detail": f"needs {needs}"}
    ok = value <= limit if op == "<=" else value >= limit
    return {
        "name": name,
        "text": text,
        "status": "met" if ok else "MISSED",
        "value": round(value, 4),
        "limit": round(limit, 4),
        "detail": f"{value:,.4g} {unit}; the target is {op} {limit:,.4g} {unit}",
    }


def times(x: float | None, k: float) -> float | None:
    return None if x is None else k * x


def _rows_per_cpu_s(rows: int, cpu_us: float | None) -> float | None:
    return rows / (cpu_us * 1e-6) if cpu_us else None


def _log_targets(entries: Entries, rows_list: Iterable[int]) -> list[dict[str, Any]]:
    out = []
    for rows in rows_list:
        for api, with_log in (("native", "sibyl-native"), ("v2", "sibyl-v2"), ("native", "sibyl-native-kafka")):
            off = f"sibyl-{api}-nolog"
            sink = "Kafka" if "kafka" in with_log else "file"
            out.append(
                target(
                    f"log-{sink.lower()}-{api}-{rows}",
                    f"{sink} log with feature values adds <= 20% server CPU per call over the log off ({api}, {rows} "
                    "row(s))",
                    cpu(entries, with_log, rows),
                    times(cpu(entries, off, rows), 1.2),
                    "<=",
                    "µs",
                    f"{with_log} and {off} at {rows} row(s)",
                )
            )
    return out


def _memory(notes: dict[str, Any]) -> dict[str, Any]:
    memory = notes.get("memory") or {}
    procs = memory.get("processes") or []
    rss = max((p["rss_bytes"] for p in procs), default=None)
    limit = 1.5 * memory["model_bytes"] + 150 * MB if "model_bytes" in memory else None
    return target(
        "memory",
        "RSS per worker <= 1.5 x loaded model bytes + 150 MB (sibyl group's server, after its runs)",
        rss / MB if rss else None,
        limit / MB if limit else None,
        "<=",
        "MB",
        "the sibyl group run on a local server",
    )


def _http_targets(entries: Entries) -> list[dict[str, Any]]:
    """Issue 33 over HTTP: sibyl's V2 REST 1-row p99 <= 0.8 x the best HTTP peer's, same wrk run, c=1 and c=8."""
    sibyl = find(entries, "sibyl-rest", 1, "wrk")
    peers = [
        e for e in entries if e.get("section") == "http" and e.get("kind") == "peer" and e["rows"] == 1 and "http" in e
    ]
    out = []
    for c in ("1", "8"):
        p99s = {e["name"]: figure(e, f"http.{c}", "p99_ms") for e in peers}
        best = min(((v, n) for n, v in p99s.items() if v is not None), default=None)
        out.append(
            target(
                f"http-p99-c{c}",
                f"1-row p99 over HTTP (wrk, c={c}) <= 0.8 x the best HTTP peer's" + (f" ({best[1]})" if best else ""),
                figure(sibyl, f"http.{c}", "p99_ms") if sibyl else None,
                times(best[0] if best else None, 0.8),
                "<=",
                "ms",
                "sibyl-rest and at least one HTTP peer at 1 row",
            )
        )
    return out


def evaluate(entries: Entries, notes: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    ml1, ml100 = cpu(entries, "mlserver-v2", 1), cpu(entries, "mlserver-v2", 100)
    echo = find(entries, "echo-native", 1)
    native = find(entries, "sibyl-native", 1)
    redis, shadow = find(entries, "redis-fill", 100), find(entries, "shadow-log", 100)
    out = [
        target(
            "cpu-v2-vs-mlserver",
            "server CPU per single-row call, V2 <= 0.6 x MLServer's",
            cpu(entries, "sibyl-v2", 1),
            times(ml1, 0.6),
            "<=",
            "µs",
            "sibyl-v2 and mlserver-v2 at 1 row",
        ),
        target(
            "cpu-native-vs-mlserver",
            "server CPU per single-row call, native <= 0.6 x MLServer's",
            cpu(entries, "sibyl-native", 1),
            times(ml1, 0.6),
            "<=",
            "µs",
            "sibyl-native and mlserver-v2 at 1 row",
        ),
        target(
            "native-p50-vs-echo",
            "native c=1 p50 <= 1.5 x the grpc.aio echo floor's",
            figure(native, "closed.1", "p50_ms") if native else None,
            times(figure(echo, "closed.1", "p50_ms") if echo else None, 1.5),
            "<=",
            "ms",
            "sibyl-native and echo-native at 1 row",
        ),
        target(
            "rows-per-cpu-s-100",
            "predictions per CPU-second at 100 rows per call (V2) >= 3 x MLServer's",
            _rows_per_cpu_s(100, cpu(entries, "sibyl-v2", 100)),
            times(_rows_per_cpu_s(100, ml100), 3),
            ">=",
            "rows/s",
            "sibyl-v2 and mlserver-v2 at 100 rows",
        ),
        *_log_targets(entries, (1, 100)),
        *_http_targets(entries),
        target(
            "shadow-log-cpu",
            "shadow-log CPU per call <= 1.2 x redis-fill's",
            cpu(entries, "shadow-log", 100),
            times(cpu(entries, "redis-fill", 100), 1.2),
            "<=",
            "µs",
            "shadow-log and redis-fill",
        ),
        target(
            "shadow-log-rate",
            "shadow-log max rate at the SLO >= 0.8 x redis-fill's",
            figure(shadow, "sweep", "max_rps") if shadow else None,
            times(figure(redis, "sweep", "max_rps") if redis else None, 0.8),
            ">=",
            "rps",
            "shadow-log and redis-fill sweeps",
        ),
        target(
            "redis-fill-p99",
            "redis-fill (100 rows, 100 entities from Redis) p99 <= 6 ms at 100 rps",
            (redis.get("fixed") or {}).get("p99_ms") if redis else None,
            6.0,
            "<=",
            "ms",
            "redis-fill's fixed-rate run",
        ),
        _memory(notes or {}),
    ]
    rate = (redis or {}).get("fixed", {}).get("target_rps")
    if rate is not None and out[-2]["status"] != "n/a" and rate != 100:
        out[-2]["detail"] += f" (measured at {rate:g} rps)"
    return out
