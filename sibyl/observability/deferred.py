"""Per-call metric updates, queued on the request path and applied in bulk off it.

A prometheus_client `Histogram.observe` walks the buckets in Python and takes two locks; a request made ten such
updates (stage and request latencies, rows, counters), a visible share of a 1-row call's CPU
(docs/performance.md#metric-updates). The request path now appends (metric, value) to a deque (no lock) and
`flush()` applies what is queued: per histogram child, one bisect or numpy `searchsorted` pass and one `inc` per
non-empty bucket (sibyl.compat.prometheus_buckets), however many calls came in. Flushed by the records lane after
each batch of answered calls (serving.after_response), before every scrape (a collector registered first in the
registry; other bulk producers' `hooks` run first, see `settle`), and inline when nothing has flushed for `limit`
updates, so the queue stays bounded. The values are
prometheus_client's own, so multiprocess mode works as before; a scrape lags the calls by at most one records
batch (~ms).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import Collector, CollectorRegistry

from sibyl.compat.prometheus_buckets import observe_many

Metric = Histogram | Counter | Gauge  # a labelled child (or an unlabelled metric): observe() or inc()


class Deferred(Collector):
    def __init__(self, registry: CollectorRegistry | None = None, limit: int = 65_536) -> None:
        self.items: deque[tuple[Metric, float]] = deque()
        # The request path's own append, (metric, value): deque.append in C, no Python call per update. Such a
        # caller checks len(items) against limit itself once per call, as observe() does for each update.
        self.append = self.items.append
        self.limit = limit
        # Other bulk producers (serving.verdicts) flushed before a scrape: see settle().
        self.hooks: list[Callable[[], object]] = []
        if registry is not None:
            registry.register(self)  # first in the registry: flushed before any metric is collected

    def observe(self, metric: Metric, value: float) -> None:
        """Histogram.observe(value) or Counter.inc(value), later. Thread-safe (deque.append)."""
        self.items.append((metric, value))
        if len(self.items) > self.limit:
            self.flush()

    def flush(self) -> int:
        """Apply everything queued so far; returns how many updates. Any thread; safe to run concurrently."""
        items = self.items
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
                observe_many(metric, values)  # straight into its buckets: sibyl.compat.prometheus_buckets
            else:
                metric.inc(sum(values))
        return count

    def settle(self) -> int:
        """The hooks, then flush(): before each scrape (collect), so a scrape shows every update made before it."""
        for hook in self.hooks:
            hook()
        return self.flush()

    # Collector: nothing of its own to export; collecting settles.
    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        self.settle()
        return []
