"""`sibyl models shadow-report PREDICTOR`: the live verdicts of a running server, read from its /metrics.

Per candidate (shadow, arm, extra) and slice: rows compared, decision agreement, |delta| mean and quantiles (from
the sibyl_shadow_abs_delta buckets, interpolated as Prometheus' histogram_quantile does), and rank agreement; then
the answering model's rows and positive rate per slice. The numbers are the server's since it started (counters),
summed over its workers; docs/observability.md#reading-a-verdict says how to read them. The JSON form
(`--format json`) is documented there and stable.
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sibyl.errors import InvalidArgument, Unavailable
from sibyl.serving.slices import label_order

QUANTILES = (0.5, 0.9, 0.99)


def metrics_url(target: str) -> str:
    """host:port, http(s)://host:port or a full URL of the metrics endpoint."""
    if not target.startswith(("http://", "https://")):
        target = f"http://{target}"
    return target if target.rstrip("/").endswith("/metrics") else f"{target.rstrip('/')}/metrics"


def fetch(target: str, timeout_s: float = 10.0) -> str:
    url = metrics_url(target)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local target never goes via a proxy
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return str(response.read().decode())
    except OSError as exc:
        raise Unavailable(f"cannot read {url}: {exc}; is the server's metrics port (default 9100) right?") from None


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs, sorted, +Inf last."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # in the overflow bucket: the highest finite bound, as Prometheus answers
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


def report(text: str, predictor: str) -> dict[str, Any]:
    """The verdicts of one predictor from a metrics page: the JSON of `--format json`."""
    agree: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: {"agree": 0.0, "disagree": 0.0})
    buckets: dict[tuple[str, ...], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[tuple[str, ...], float] = defaultdict(float)
    rank: dict[tuple[str, ...], float] = {}
    answered: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if labels.get("predictor") != predictor:
                continue
            if s.name == "sibyl_shadow_decisions_total":
                key = (labels["model"], labels["version"], labels["role"], labels["slice"])
                agree[key][labels["outcome"]] += s.value
            elif s.name == "sibyl_shadow_abs_delta_bucket":
                key = (labels["model"], labels["version"], labels["role"], labels["slice"])
                buckets[key][float(labels["le"])] += s.value
            elif s.name == "sibyl_shadow_abs_delta_sum":
                sums[(labels["model"], labels["version"], labels["role"], labels["slice"])] += s.value
            elif s.name == "sibyl_shadow_rank_agreement":
                window = (labels["model"], labels["version"], labels["slice"])
                rank[window] = min(rank.get(window, s.value), s.value)  # several workers: the worst window
            elif s.name == "sibyl_decisions_total":
                answered[(labels["model"], labels["version"], labels["slice"])][labels["decision"]] += s.value
    candidates: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for (model, version, role, slice_), counts in agree.items():
        rows = counts["agree"] + counts["disagree"]
        cumulative = sorted(buckets[(model, version, role, slice_)].items())
        row: dict[str, Any] = {
            "slice": slice_,
            "rows": int(rows),
            "agreement": counts["agree"] / rows if rows else None,
            "delta_mean": sums[(model, version, role, slice_)] / rows if rows else None,
        }
        row |= {f"delta_p{round(q * 100)}": quantile(q, cumulative) for q in QUANTILES}
        row["rank_agreement"] = rank.get((model, version, slice_))
        candidates[(model, version, role)].append(row)
    primary: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (model, version, slice_), decisions in answered.items():
        rows = sum(decisions.values())
        positive = decisions.get("positive")
        primary[(model, version)].append(
            {"slice": slice_, "rows": int(rows), "positive_rate": positive / rows if positive is not None else None}
        )
    return {
        "predictor": predictor,
        "candidates": [
            {"model": m, "version": v, "role": r, "slices": sorted(rows, key=_slice_order)}
            for (m, v, r), rows in sorted(candidates.items())
        ],
        "answering": [
            {"model": m, "version": v, "slices": sorted(rows, key=_slice_order)}
            for (m, v), rows in sorted(primary.items())
        ],
    }


def _slice_order(row: dict[str, Any]) -> tuple[Any, ...]:
    return label_order(row["slice"])


def _number(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table(result: dict[str, Any]) -> str:
    """The report as aligned text: one block per candidate, one line per slice; then the answering models."""
    if not result["candidates"] and not result["answering"]:
        raise InvalidArgument(
            f"no verdicts for predictor {result['predictor']!r} on that server: check the name, and that it has "
            "answered calls since it started (a shadow, an arm or extra_models gives candidates)"
        )
    lines: list[str] = []
    head = f"{'slice':<28} {'rows':>9} {'agree':>7} {'|d| mean':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'rank':>7}"
    for c in result["candidates"]:
        lines += [f"{c['model']}@{c['version']} ({c['role']}) vs primary of {result['predictor']}", head]
        for r in c["slices"]:
            lines.append(
                f"{r['slice']:<28} {r['rows']:>9} {_percent(r['agreement']):>7} {_number(r['delta_mean']):>9} "
                f"{_number(r['delta_p50']):>9} {_number(r['delta_p90']):>9} {_number(r['delta_p99']):>9} "
                f"{_number(r['rank_agreement'], 3):>7}"
            )
        lines.append("")
    for a in result["answering"]:
        lines += [f"{a['model']}@{a['version']} answering for {result['predictor']}",
                  f"{'slice':<28} {'rows':>9} {'positive':>9}"]  # fmt: skip
        lines += [f"{r['slice']:<28} {r['rows']:>9} {_percent(r['positive_rate']):>9}" for r in a["slices"]]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
