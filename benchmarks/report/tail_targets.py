"""Issue 33's targets (the tail), checked against one run's results.json entries and notes.

Same run, same client, default settings, file log on: 1-row V2 over gRPC, sibyl's p99 and p99.9 against
MLServer's at c=1 and c=8; p99 against 2 x p50 at c=1; the shadow-and-Kafka scenario against the log off;
single-row calls beside 10,000-row calls (the interference entry); CPU per call and the median against the run
before the tail work (BASELINE), each as a ratio to the same run's grpc.aio echo floor, so that the machine's
speed on the day cancels out (docs/performance.md#the-box-drifts). The HTTP target is in targets.py beside the
other HTTP figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report.results import figure
from benchmarks.report.targets import find, target, times

Entries = list[dict[str, Any]]
# The last full run before issue 33's work (2026-12-02, commit in its results.md), kept for these ratios.
BASELINE = Path(__file__).resolve().parents[1] / "baselines" / "before-issue-33.json"
INTERFERENCE_P99_MS = 10.0


def _get(entries: Entries, name: str, where: str, key: str) -> float | None:
    e = find(entries, name, 1)
    return figure(e, where, key) if e else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _vs_mlserver(entries: Entries) -> list[dict[str, Any]]:
    out = []
    for c in ("1", "8"):
        for key, label in (("p99_ms", "p99"), ("p999_ms", "p99.9")):
            out.append(
                target(
                    f"grpc-{label}-c{c}",
                    f"1-row V2 over gRPC, c={c}: sibyl's {label} <= 0.8 x MLServer's",
                    _get(entries, "sibyl-v2", f"closed.{c}", key),
                    times(_get(entries, "mlserver-v2", f"closed.{c}", key), 0.8),
                    "<=",
                    "ms",
                    f"sibyl-v2 and mlserver-v2 at 1 row, c={c}",
                )
            )
    return out


def _p99_over_p50(entries: Entries) -> list[dict[str, Any]]:
    return [
        target(
            f"p99-2x-p50-{api}",
            f"sibyl {api} 1 row, c=1: p99 <= 2 x p50",
            _get(entries, f"sibyl-{api}", "closed.1", "p99_ms"),
            times(_get(entries, f"sibyl-{api}", "closed.1", "p50_ms"), 2),
            "<=",
            "ms",
            f"sibyl-{api} at 1 row, c=1",
        )
        for api in ("v2", "native")
    ]


def _shadow_kafka(entries: Entries) -> dict[str, Any]:
    return target(
        "shadow-kafka-p99",
        "1 row, c=1: p99 with an MLP shadow and the Kafka log (shadow-kafka-1) <= 1.1 x with both off "
        "(sibyl-native-nolog)",
        _get(entries, "shadow-kafka-1", "closed.1", "p99_ms"),
        times(_get(entries, "sibyl-native-nolog", "closed.1", "p99_ms"), 1.1),
        "<=",
        "ms",
        "shadow-kafka-1 and sibyl-native-nolog at c=1",
    )


def _interference(notes: dict[str, Any]) -> dict[str, Any]:
    doc = notes.get("interference") or {}
    on = (((doc.get("variants") or {}).get("defaults") or {}).get("on") or {}).get("p99")
    return target(
        "interference-p99",
        f"1-row calls at 100 rps beside 10,000-row calls back to back: p99 <= {INTERFERENCE_P99_MS:g} ms",
        on["median"] if on else None,
        INTERFERENCE_P99_MS,
        "<=",
        "ms",
        "the interference entry",
    )


def _vs_baseline(entries: Entries, baseline: Entries | None) -> list[dict[str, Any]]:
    """CPU per 1-row call (c=8) and c=1 p50, each over the echo floor's, against the same ratio before."""
    out = []
    for api in ("v2", "native"):
        for short, where, key, label, unit in (
            ("cpu", "closed.8", "server_cpu_us_per_call", "CPU per call", "x echo's CPU"),
            ("p50", "closed.1", "p50_ms", "c=1 p50", "x echo's p50"),
        ):
            now = _ratio(_get(entries, f"sibyl-{api}", where, key), _get(entries, f"echo-{api}", where, key))
            before = None
            if baseline is not None:
                before = _ratio(_get(baseline, f"sibyl-{api}", where, key), _get(baseline, f"echo-{api}", where, key))
            out.append(
                target(
                    f"{short}-{api}-vs-before",
                    f"sibyl {api} 1 row: {label} over the echo floor's <= 1.05 x the same ratio before the tail work "
                    "(2026-12-02 run)",
                    now,
                    times(before, 1.05),
                    "<=",
                    unit,
                    f"sibyl-{api} and echo-{api} at 1 row in this run and in {BASELINE.name}",
                )
            )
    return out


def load_baseline(path: Path = BASELINE) -> Entries | None:
    try:
        entries: Entries = json.loads(path.read_text())["entries"]
    except (OSError, ValueError, KeyError):
        return None
    return entries


def evaluate(entries: Entries, notes: dict[str, Any], baseline: Entries | None) -> list[dict[str, Any]]:
    return [
        *_vs_mlserver(entries),
        *_p99_over_p50(entries),
        _shadow_kafka(entries),
        _interference(notes),
        *_vs_baseline(entries, baseline),
    ]
