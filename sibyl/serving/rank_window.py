"""Spearman rank correlation of two score columns over a sliding window of the last rows.

`RankWindow` keeps the last `size` (primary, candidate) pairs in a ring buffer (two float64 arrays: 160 KB at the
default 10,000 rows) and says when its gauge is due: every `every` rows, or at every add while it holds fewer than
`every` rows (a quiet predictor still gets a number). Spearman's rho is Pearson's r of the average ranks (ties share
their mean rank), as scipy.stats.spearmanr computes it; tests/serving/test_rank_window.py checks it against scipy.
"""

from __future__ import annotations

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
    def __init__(self, size: int, every: int) -> None:
        self.size, self.every = size, every
        self.a = np.empty(size, np.float64)
        self.b = np.empty(size, np.float64)
        self.filled = 0  # rows held, up to size
        self.next = 0  # where the next row goes
        self.since = 0  # rows added since the gauge was last refreshed

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        n = a.size
        if n >= self.size:  # only the last `size` rows stay
            a, b, n = a[-self.size :], b[-self.size :], self.size
        at = (self.next + np.arange(n)) % self.size
        self.a[at], self.b[at] = a, b
        self.next = (self.next + n) % self.size
        self.filled = min(self.size, self.filled + n)
        self.since += a.size

    def due(self) -> bool:
        return self.since >= self.every or (self.since > 0 and self.filled < self.every)

    def spearman(self) -> float | None:
        self.since = 0
        return spearman(self.a[: self.filled], self.b[: self.filled])
