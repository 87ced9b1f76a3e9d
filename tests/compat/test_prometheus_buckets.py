"""compat.prometheus_buckets on the installed prometheus_client: every histogram sibyl exports has the bucket
values observe_many adds to, observe_many takes that path (observe() is never called) and writes the series
observe() would; a histogram without them is observed value by value, with the same result."""

from __future__ import annotations

import random
from importlib.metadata import version
from typing import cast

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from sibyl.compat.prometheus_buckets import SMALL, bucket_index, fast_path_taken, observe_grouped, observe_many
from sibyl.observability.metrics import LATENCY_BUCKETS, Metrics
from tests.support.metric_samples import samples


def histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("h_seconds", "h", ["p"], buckets=LATENCY_BUCKETS, registry=registry)


def values(count: int) -> list[float]:
    """Bucket bounds themselves (a value equal to a bound belongs to that bucket), zero, one above the top bucket,
    then random latencies up to `count` values."""
    rng = random.Random(count)
    edge = [*LATENCY_BUCKETS, 0.0, 99.0]
    return [*edge, *(rng.expovariate(300) for _ in range(count - len(edge)))]


class ObserveOnly:
    """A histogram as a prometheus_client without the bucket internals would be: only its public observe()."""

    def __init__(self, inner: Histogram) -> None:
        self.observe = inner.observe


def test_every_histogram_sibyl_exports_has_the_bucket_values() -> None:
    metrics = Metrics()
    found = [m for m in vars(metrics).values() if isinstance(m, Histogram)]
    assert len(found) >= 3
    for metric in found:
        child = metric.labels(*["x"] * len(metric._labelnames)) if metric._labelnames else metric
        assert fast_path_taken(child), f"prometheus_client {version('prometheus-client')}: {metric._name} lacks them"


@pytest.mark.parametrize("count", [SMALL - 1, 2_000])  # one bisect per value; numpy's searchsorted
def test_observe_many_adds_to_the_buckets_and_equals_observe(count: int) -> None:
    direct, bulk = CollectorRegistry(), CollectorRegistry()
    one_by_one, child = histogram(direct).labels("a"), histogram(bulk).labels("a")
    observed: list[float] = []
    child.observe = observed.append  # type: ignore[method-assign]  # the fast path never calls it
    batch = values(count)
    for value in batch:
        one_by_one.observe(value)
    observe_many(child, batch)
    assert observed == [], "observe_many went through observe(): the bucket fast path was not taken"
    got, want = samples(bulk), samples(direct)
    assert got.keys() == want.keys()
    for key, value in want.items():  # counts exactly; the sum up to float addition order
        assert got[key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("count", [SMALL - 1, 2_000])
def test_without_the_bucket_values_each_value_is_observed(count: int) -> None:
    direct, fallback = CollectorRegistry(), CollectorRegistry()
    one_by_one, public = histogram(direct).labels("a"), ObserveOnly(histogram(fallback).labels("a"))
    assert not fast_path_taken(cast(Histogram, public))
    batch = values(count)
    for value in batch:
        one_by_one.observe(value)
    observe_many(cast(Histogram, public), batch)
    assert samples(fallback) == samples(direct)


def test_observe_grouped_equals_observe_on_each_child() -> None:
    direct, bulk = CollectorRegistry(), CollectorRegistry()
    rng = random.Random(5)
    labels = ["a", "b", "c"]
    batch = np.asarray(values(3_000))
    groups = np.asarray([rng.randrange(3) for _ in batch])
    one_by_one = histogram(direct)
    for value, group in zip(batch.tolist(), groups.tolist(), strict=True):
        one_by_one.labels(labels[group]).observe(value)
    grouped = histogram(bulk)
    children = [grouped.labels(label) for label in labels]
    observe_grouped(children, groups, batch, bucket_index(batch, LATENCY_BUCKETS))
    got, want = samples(bulk), samples(direct)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
