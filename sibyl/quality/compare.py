"""Paired comparisons of two models, a and b, scored on the same labelled rows: is a's AUC, log loss or Brier score
different from b's by more than the rows' sampling noise explains? Each comparison returns the difference a - b,
its standard error and a confidence interval (95% by default); verdict() turns an interval into a word.

- delong(): the AUC difference with DeLong, DeLong & Clarke-Pearson's (1988) variance, computed by Sun & Xu's
  (2014) O(n log n) midrank algorithm. It accounts for the two AUCs being correlated (same rows), which makes it
  far tighter than comparing two separate intervals. Unweighted.
- paired_loss_diff(): the mean per-row loss difference (log loss or Brier), normal approximation.

What a verdict means: on rows like these (drawn independently from the same traffic), a's metric differs from b's
in the stated direction, and an interval built this way misses the true difference in about 5% of comparisons.
What it cannot tell: (1) with many slices and pairs, some verdicts are wrong by chance (20 comparisons where the
models are equal give about one "better" or "worse"); (2) rows are not independent when one user or order
appears many times, and then the interval is too narrow; (3) it says nothing about rows without an outcome yet
(late or missing labels may differ from the ones that arrived); (4) a significant difference may be too small to
matter, and "not enough evidence" does not mean the models are equal; (5) looking again and again until a verdict
appears raises the error rate above 5%; (6) traffic changes over time, so a verdict holds for the period measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sibyl.errors import InvalidArgument
from sibyl.quality import binary, inputs
from sibyl.quality.inputs import Floats

Verdict = Literal["better", "worse", "not enough evidence"]
LossKind = Literal["log_loss", "brier"]
CONFIDENCE = 0.95


@dataclass(frozen=True)
class AucDifference:
    """delong()'s answer. `difference` is auc_a - auc_b; `ci` is its confidence interval."""

    n: int
    positives: int
    negatives: int
    auc_a: float
    auc_b: float
    se_a: float  # DeLong's standard error of each AUC alone
    se_b: float
    difference: float
    se: float
    ci: tuple[float, float]
    p_value: float  # two-sided, of "no difference"
    confidence: float


@dataclass(frozen=True)
class LossDifference:
    """paired_loss_diff()'s answer. `difference` is loss_a - loss_b (weighted means): < 0 when a loses less."""

    kind: LossKind
    n: int  # rows of weight > 0
    loss_a: float
    loss_b: float
    difference: float
    se: float
    ci: tuple[float, float]
    p_value: float
    confidence: float


def _interval(difference: float, se: float, confidence: float) -> tuple[tuple[float, float], float]:
    """(the normal confidence interval, the two-sided p-value of 0)."""
    if not 0.0 < confidence < 1.0:
        raise InvalidArgument(f"confidence must be within (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    if se <= 0.0:  # no sampling noise at all: a nonzero difference is certain
        return (difference, difference), 1.0 if difference == 0.0 else 0.0
    p_value = math.erfc(abs(difference) / se / math.sqrt(2.0))
    return (difference - z * se, difference + z * se), p_value


def midranks(values: NDArray[Any]) -> Floats:
    """1-based ranks, tied values sharing the mean of their ranks; O(n log n)."""
    _, where, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)  # rank of each group's last member
    return (ends - (counts - 1) / 2.0)[where]


def delong(y: ArrayLike, s_a: ArrayLike, s_b: ArrayLike, confidence: float = CONFIDENCE) -> AucDifference | None:
    """AUCs of a and b on the same rows, their difference a - b and its DeLong standard error and interval. Scores
    may be any finite reals. None when either class has fewer than 2 rows (the variance is undefined)."""
    labels = inputs.labels(y)
    a = inputs.scores(s_a, "s_a", unit_interval=False)
    b = inputs.scores(s_b, "s_b", unit_interval=False)
    rows = inputs.same_length(y=labels, s_a=a, s_b=b)
    positive = labels == 1.0
    m = int(positive.sum())
    n = rows - m
    if m < 2 or n < 2:
        return None
    aucs: list[float] = []
    placements_pos: list[Floats] = []  # per model: each positive's share of negatives below it (ties half)
    placements_neg: list[Floats] = []  # per model: each negative's share of positives above it (ties half)
    for scores in (a, b):
        xs, ys = scores[positive], scores[~positive]
        rank_x, rank_y = midranks(xs), midranks(ys)
        rank_z = midranks(np.concatenate((xs, ys)))
        aucs.append(float((rank_z[:m].sum() - m * (m + 1) / 2.0) / (m * n)))
        placements_pos.append((rank_z[:m] - rank_x) / n)
        placements_neg.append(1.0 - (rank_z[m:] - rank_y) / m)
    covariance = np.cov(np.vstack(placements_pos)) / m + np.cov(np.vstack(placements_neg)) / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    se = math.sqrt(max(variance, 0.0))
    difference = aucs[0] - aucs[1]
    ci, p_value = _interval(difference, se, confidence)
    return AucDifference(
        n=rows,
        positives=m,
        negatives=n,
        auc_a=aucs[0],
        auc_b=aucs[1],
        se_a=math.sqrt(max(float(covariance[0, 0]), 0.0)),
        se_b=math.sqrt(max(float(covariance[1, 1]), 0.0)),
        difference=difference,
        se=se,
        ci=ci,
        p_value=p_value,
        confidence=confidence,
    )


def _row_losses(kind: str, y: Floats, p: NDArray[Any]) -> Floats:
    if kind == "log_loss":
        return binary.row_log_loss(y, p)
    if kind == "brier":
        return (y - p.astype(np.float64)) ** 2
    raise InvalidArgument(f'kind must be "log_loss" or "brier", got {kind!r}')


def paired_loss_diff(
    y: ArrayLike,
    p_a: ArrayLike,
    p_b: ArrayLike,
    kind: LossKind = "log_loss",
    w: ArrayLike | None = None,
    confidence: float = CONFIDENCE,
) -> LossDifference | None:
    """Weighted mean of the per-row loss difference loss_a - loss_b, with its standard error and normal interval.
    The variance is the weighted mean's sandwich estimate, n / (n - 1) * sum(w^2 (d - mean)^2) / sum(w)^2, which is
    the textbook s^2 / n with unit weights. None with fewer than 2 rows of weight > 0."""
    labels = inputs.labels(y)
    a = inputs.scores(p_a, "p_a")
    b = inputs.scores(p_b, "p_b")
    rows = inputs.same_length(y=labels, p_a=a, p_b=b)
    weights = inputs.weights(w, rows)
    loss_a, loss_b = _row_losses(kind, labels, a), _row_losses(kind, labels, b)
    counted = int(np.count_nonzero(weights))
    total = float(weights.sum())
    if counted < 2:
        return None
    diffs = loss_a - loss_b
    mean = float(np.dot(weights, diffs) / total)
    variance = counted / (counted - 1) * float(np.dot(weights**2, (diffs - mean) ** 2)) / total**2
    se = math.sqrt(variance)
    ci, p_value = _interval(mean, se, confidence)
    return LossDifference(
        kind=kind,
        n=counted,
        loss_a=float(np.dot(weights, loss_a) / total),
        loss_b=float(np.dot(weights, loss_b) / total),
        difference=mean,
        se=se,
        ci=ci,
        p_value=p_value,
        confidence=confidence,
    )


def verdict(diff_ci: tuple[float, float], higher_is_better: bool, min_rows: int, n: int) -> Verdict:
    """ "better" or "worse" for a (against b) when the interval of a - b excludes 0 and at least `min_rows` rows
    were compared; otherwise "not enough evidence" (also for a NaN bound). `higher_is_better` is True for AUC,
    False for losses. The module docstring says what the verdict means and what it cannot tell."""
    low, high = diff_ci
    if n < min_rows or math.isnan(low) or math.isnan(high):
        return "not enough evidence"
    if low > 0.0:
        return "better" if higher_is_better else "worse"
    if high < 0.0:
        return "worse" if higher_is_better else "better"
    return "not enough evidence"
