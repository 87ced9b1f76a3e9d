"""A running `sibyl serve`'s own metrics, read over HTTP: what the slow-dependency and full-disk scenarios judge
latency and losses by (the server's histogram and counters, not the test's clock). The reading itself is
tests.support.metric_samples.scraped (re-exported as `scrape`); this module adds the sums and bounds taken from it."""

from __future__ import annotations

from tests.support.metric_samples import SampleKey
from tests.support.metric_samples import scraped as scrape

__all__ = ["histogram_delta", "quantile_bound", "scrape", "value"]


def value(samples: dict[SampleKey, float], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def histogram_delta(before: dict[SampleKey, float], after: dict[SampleKey, float], name: str) -> dict[float, float]:
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
