"""Gauges that come and go (a model version loaded, its drift PSI) across worker processes.

prometheus_client's multiprocess mode keeps each process's values in a file and cannot delete a series from it:
`Gauge.remove()` forgets the child in memory, the file keeps its last value, and the merged /metrics showed
every version ever loaded at 1. So a removed series is written as NaN (REMOVED) and the parent's LiveCollector
leaves NaN gauge samples out before merging. The gauges use "livemax": a worker's file goes when the worker
dies (the supervisor calls mark_process_dead), and a series stays while any live worker still sets it.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import warnings
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

REMOVED = math.nan  # what a removed series holds in a multiprocess file


def multiprocess() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


def drop_series(gauge: Gauge, *labels: str) -> None:
    """Remove one labelled series, in this process and (multiprocess mode) from the merged view."""
    if multiprocess():
        gauge.labels(*labels).set(REMOVED)
    with warnings.catch_warnings(), contextlib.suppress(KeyError):
        warnings.simplefilter("ignore", UserWarning)  # "removal not implemented in multi-process mode": see above
        gauge.remove(*labels)


class LiveCollector(MultiProcessCollector):
    """MultiProcessCollector that leaves out gauge series written as REMOVED."""

    def __init__(self, registry: CollectorRegistry | None, path: str | None = None) -> None:
        # Named, not super(): mypy allows the untyped prometheus_client.multiprocess calls by their full name.
        MultiProcessCollector.__init__(self, registry, path)

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self._path, "*.db"))
        metrics: dict[str, Metric] = MultiProcessCollector._read_metrics(files)
        for metric in metrics.values():
            if metric.type == "gauge":
                metric.samples = [s for s in metric.samples if not math.isnan(s.value)]
        merged: Iterable[Metric] = MultiProcessCollector._accumulate_metrics(metrics, True)
        return merged
