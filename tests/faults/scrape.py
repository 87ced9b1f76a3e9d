"""A running `sibyl serve`'s own metrics, read over HTTP: what the slow-dependency and full-disk scenarios judge
latency and losses by (the server's histogram and counters, not the test's clock)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: ignore HTTP(S)_PROXY


def scrape(metrics_port: int) -> dict[tuple[str, Labels], float]:
    """{(sample name, sorted labels): value} from http://127.0.0.1:PORT/metrics."""
    with _OPENER.open(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def histogram_delta(
    before: dict[tuple[str, Labels], float], after: dict[tuple[str, Labels], float], name: str
) -> dict[float, float]:
    """{le: observations between the two scrapes at or under le} for histogram `name` (all label sets summed)."""
    out: dict[float, float] = {}
    for (n, labels), v in after.items():
        if n != f"{name}_bucket":
            continue
        le = float(dict(labels)["le"])
        out[le] = out.get(le, 0.0) + v - before.get((n, labels), 0.0)
    return dict(sorted(out.items()))


def quantile_bound(buckets: dict[float, float], q: float) -> float:
    """The smallest bucket bound holding at least fraction q of the observations (inf when none do)."""
    total = buckets.get(float("inf"), 0.0)
    return next((le for le, n in buckets.items() if total and n >= q * total), float("inf"))
