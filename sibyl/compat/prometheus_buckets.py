"""Many observations of one prometheus_client Histogram at once, through its bucket values, else observe() each.

`Histogram.observe` walks the buckets in Python and takes two locks per value (docs/performance.md#metric-updates).
`observe_many` (`observe_grouped`: for many children of one histogram at once) finds every value's bucket (the first upper bound >= value) with one bisect each, or one numpy
searchsorted for many, and adds to the histogram's own bucket and sum values: the exported series, multiprocess
mode included, are what observe() would have written. `_upper_bounds`, `_buckets` and `_sum` are not public API
(present since long before our lowest pin, 0.20): `fast_path_taken(histogram)` says whether a histogram has them,
and tests/compat/test_prometheus_buckets.py fails when the installed prometheus_client does not.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import Histogram

SMALL = 32  # fewer values than this: one bisect each beats numpy's fixed cost


def fast_path_taken(histogram: Histogram) -> bool:
    """observe_many adds to this histogram's (an unlabelled one, or a labelled child) bucket values directly."""
    return all(getattr(histogram, name, None) is not None for name in ("_upper_bounds", "_buckets", "_sum"))


def observe_many(histogram: Histogram, values: Sequence[float] | np.ndarray) -> None:
    """histogram.observe(value) for every value: the same buckets and sum, in bulk."""
    if not fast_path_taken(histogram):  # a prometheus_client without these internals
        for value in values:
            histogram.observe(value)
        return
    internals: Any = histogram
    bounds, buckets, total = internals._upper_bounds, internals._buckets, internals._sum
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


def bucket_index(values: np.ndarray, bounds: Sequence[float]) -> np.ndarray:
    """Each value's bucket among `bounds` (the first upper bound >= value), as Histogram.observe finds it."""
    return np.searchsorted(np.asarray(bounds, np.float64), values, side="left")


def observe_grouped(children: list[Histogram], groups: np.ndarray, values: np.ndarray, buckets: np.ndarray) -> None:
    """children[g].observe(v) for every (g, v) of (groups, values), `buckets` being bucket_index(values) of the
    children's shared bounds: one bincount for all the groups, then one inc per non-empty bucket of each child."""
    if not children:
        return
    if not all(fast_path_taken(child) for child in children):
        for g in np.unique(groups).tolist():
            observe_many(children[g], values[groups == g])
        return
    first: Any = children[0]
    nb = len(first._upper_bounds)
    counts = np.bincount(groups * nb + buckets, minlength=len(children) * nb).reshape(len(children), nb)
    sums = np.bincount(groups, weights=values, minlength=len(children))
    for g in np.flatnonzero(counts.sum(axis=1)).tolist():
        add_tallied(children[g], counts[g], float(sums[g]))


def add_tallied(histogram: Histogram, counts: np.ndarray, total: float) -> None:
    """What observe() adds for rows already counted by bucket (`counts[b]` rows in bucket b) that sum to `total`.
    Only where fast_path_taken(histogram)."""
    internals: Any = histogram
    for b in np.flatnonzero(counts).tolist():
        internals._buckets[b].inc(int(counts[b]))
    internals._sum.inc(total)
