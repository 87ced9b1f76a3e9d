"""Per-call metric updates, queued on the request path and applied in bulk off it.

A prometheus_client `Histogram.observe` walks the buckets in Python and takes two locks; a request made ten such
updates (stage and request latencies, rows, counters), a visible share of a 1-row call's CPU
(docs/performance.md#metric-updates). The request path now appends (metric, value) to a deque (no lock) and
`flush()` applies what is queued: one numpy `searchsorted` + `bincount` per histogram child and one `inc` per
non-empty bucket, however many calls came in. Flushed by the records lane after each batch of answered calls
(serving.after_response), before every scrape (a collector registered first in the registry), and inline when
nothing has flushed for `limit` updates, so the queue stays bounded. The values are prometheus_client's own, so
multiprocess mode works as before; a scrape lags the calls by at most one records batch (~ms).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import Collector, CollectorRegistry

SMALL = 32  # fewer values than this per histogram child: one bisect each beats numpy's fixed cost
Metric = Histogram | Counter | Gauge  # a labelled child (or an unlabelled metric): observe() or inc()


class Deferred(Collector):
    def __init__(self, registry: CollectorRegistry | None = None, limit: int = 65_536) -> None:
        self._items: deque[tuple[Metric, float]] = deque()
        self.limit = limit
        if registry is not None:
            registry.register(self)  # first in the registry: flushed before any metric is collected

    def observe(self, metric: Metric, value: float) -> None:
        """Histogram.observe(value) or Counter.inc(value), later. Thread-safe (deque.append)."""
        self._items.append((metric, value))
        if len(self._items) > self.limit:
            self.flush()

    def flush(self) -> int:
        """Apply everything queued so far; returns how many updates. Any thread; safe to run concurrently."""
        items = self._items
        groups: dict[Metric, list[float]] = {}
        count = 0
        for _ in range(len(items)):
            try:
                metric, value = items.popleft()
            except IndexError:  # another flush took the rest
                break
            count += 1
            group = groups.get(metric)
            if group is None:
                groups[metric] = [value]
            else:
                group.append(value)
        for metric, values in groups.items():
            if isinstance(metric, Histogram):
                _observe_all(metric, values)
            else:
                metric.inc(sum(values))
        return count

    # Collector: nothing of its own to export; collecting flushes.
    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        self.flush()
        return []


def _observe_all(histogram: Histogram, values: list[float]) -> None:
    """observe() for every value: the same bucket (the first upper bound >= value) and sum, in bulk."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # a prometheus_client without these internals
        for value in values:
            histogram.observe(value)
        return
    if len(values) < SMALL:  # a few values (a quiet server flushes after every call): bisect in C, no numpy
        for value in values:
            buckets[bisect_left(bounds, value)].inc(1)
        total.inc(math.fsum(values))
        return
    array = np.asarray(values, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bounds, array, side="left"), minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(array.sum()))
