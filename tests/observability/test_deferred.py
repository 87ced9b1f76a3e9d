"""observability.deferred: queued updates end up exactly as prometheus_client's own observe()/inc() would."""

from __future__ import annotations

import random
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from sibyl.observability.deferred import Deferred
from sibyl.observability.metrics import LATENCY_BUCKETS, Metrics
from tests.support.metric_samples import samples


def pair() -> tuple[CollectorRegistry, Histogram, Counter, Deferred]:
    registry = CollectorRegistry()
    deferred = Deferred(registry)
    histogram = Histogram("h_seconds", "h", ["p"], buckets=LATENCY_BUCKETS, registry=registry)
    counter = Counter("c", "c", ["p"], registry=registry)
    return registry, histogram, counter, deferred


@pytest.mark.parametrize("extra", [0, 2_000])  # 24 values per child: one bisect each; 2,024: numpy bincount
def test_bulk_updates_equal_one_by_one(extra: int) -> None:
    direct, h1, c1, _ = pair()
    queued, h2, c2, deferred = pair()
    rng = random.Random(7)
    # bucket bounds themselves (an observation equal to a bound belongs to that bucket), zero, above the top
    values = [*LATENCY_BUCKETS, 0.0, 99.0, *(rng.expovariate(300) for _ in range(extra))]
    for v in values:
        for label in ("a", "b"):
            h1.labels(label).observe(v)
            c1.labels(label).inc(2)
            deferred.observe(h2.labels(label), v)
            deferred.observe(c2.labels(label), 2)
    got, want = samples(queued), samples(direct)  # collecting flushed first
    assert got.keys() == want.keys()
    for key, value in want.items():  # counts exactly; sums up to float addition order
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert deferred.flush() == 0


def test_queue_is_bounded_without_any_flush() -> None:
    registry, histogram, _, deferred = pair()
    deferred.limit = 100
    for _ in range(1_000):
        deferred.observe(histogram.labels("a"), 0.001)
    assert len(deferred.items) <= 100
    deferred.flush()
    assert registry.get_sample_value("h_seconds_count", {"p": "a"}) == 1_000


def test_concurrent_flushes_lose_nothing() -> None:
    registry, histogram, _, deferred = pair()
    child = histogram.labels("a")
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            deferred.flush()

    threads = [threading.Thread(target=flusher) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(20_000):
        deferred.observe(child, 0.002)
    stop.set()
    for t in threads:
        t.join()
    deferred.flush()
    assert registry.get_sample_value("h_seconds_count", {"p": "a"}) == 20_000
    assert registry.get_sample_value("h_seconds_bucket", {"p": "a", "le": "0.002"}) == 20_000


def test_metrics_registry_flushes_on_scrape() -> None:
    metrics = Metrics()
    metrics.deferred.observe(metrics.stage_latency.labels("infer"), 0.0003)
    value = metrics.registry.get_sample_value("sibyl_stage_latency_seconds_count", {"stage": "infer"})
    assert value == 1
