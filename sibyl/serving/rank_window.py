"""Spearman rank correlation of two score columns over a sliding window of the last rows.

`RankWindow` keeps the last `size` (primary, candidate) pairs in a ring buffer (two float64 arrays: 160 KB at the
default 10,000 rows) and says when its gauge is due: when rows came in and `every_s` seconds passed since the last
refresh. Refreshing sorts the window twice (about a millisecond at 10,000 rows), so its cost is bounded by the number
of windows and the clock, not by traffic: refreshing every N rows cost ~3 µs per row at 100-row calls
(docs/performance.md#verdicts). Spearman's rho is Pearson's r of the average ranks (ties share their mean rank), as
scipy.stats.spearmanr computes it; tests/serving/test_rank_window.py checks it against scipy.
"""

from __future__ import annotations

import time

import numpy as np

MIN_ROWS = 10  # fewer pairs say nothing about rank agreement


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (scipy.stats.rankdata's 'average')."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    first = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    dense = np.cumsum(first)  # 1-based group number of each sorted value
    bounds = np.concatenate((np.flatnonzero(first), [values.size]))  # where each group starts, then the end
    mean_rank = (bounds[:-1] + bounds[1:] + 1) / 2.0  # of positions start+1 .. end
    ranks = np.empty(values.size, np.float64)
    ranks[order] = mean_rank[dense - 1]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """rho of a and b; None when either is constant or there are fewer than MIN_ROWS pairs."""
    if a.size < MIN_ROWS:
        return None
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    if denominator == 0.0:
        return None
    return float((ra * rb).sum() / denominator)


class RankWindow:
    def __init__(self, size: int, every_s: float) -> None:
        self.size, self.every_s = size, every_s
        self.refreshed = -float("inf")  # time.monotonic() of the last refresh
        self.a = np.empty(size, np.float64)
        self.b = np.empty(size, np.float64)
        self.filled = 0  # rows held, up to size
        self.next = 0  # where the next row goes
        self.since = 0  # rows added since the gauge was last refreshed

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        added = n = a.size
        if n >= self.size:  # only the last `size` rows stay
            a, b, n = a[-self.size :], b[-self.size :], self.size
        # Up to the buffer's end, then the rest from its start: two copies, no index array (the flush adds every
        # slice's rows each second: docs/performance.md#verdicts).
        start = self.next
        head = min(n, self.size - start)
        self.a[start : start + head], self.b[start : start + head] = a[:head], b[:head]
        if head < n:
            self.a[: n - head], self.b[: n - head] = a[head:], b[head:]
        self.next = (start + n) % self.size
        self.filled = min(self.size, self.filled + n)
        self.since += added

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.since > 0 and now - self.refreshed >= self.every_s

    def spearman(self, now: float | None = None) -> float | None:
        self.since = 0
        self.refreshed = time.monotonic() if now is None else now
        return spearman(self.a[: self.filled], self.b[: self.filled])
