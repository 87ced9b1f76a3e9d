"""Exact, weighted quality metrics of one model on labelled rows: for a binary label and a score in [0, 1], AUC, log
loss, Brier score and calibration (with ECE); for a regression target, MAE and RMSE (in regression.py, re-exported).

Each function takes whole arrays and returns a float, or None when the metric is undefined on these rows (no row
of weight > 0; for AUC, a class absent). The row-level pieces (a row's log loss, a score's calibration bin, the
label mass per distinct score) are public so that stats.py keeps mergeable sums of exactly the same terms. Every
definition is the one scikit-learn uses, so the numbers agree with sklearn.metrics to rounding; docs/monitoring.md
gives the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sibyl.errors import InvalidArgument
from sibyl.quality import inputs
from sibyl.quality.inputs import Floats
from sibyl.quality.regression import mae, rmse, weighted_mean

__all__ = ["Calibration", "auc", "brier", "calibration", "ece", "log_loss", "mae", "rmse"]  # mae, rmse: regression.py

DEFAULT_BINS = 10


def _binary(y: ArrayLike, s: ArrayLike, w: ArrayLike | None, unit_interval: bool) -> tuple[Floats, Any, Floats]:
    labels = inputs.labels(y)
    scores = inputs.scores(s, unit_interval=unit_interval)
    rows = inputs.same_length(y=labels, s=scores)
    return labels, scores, inputs.weights(w, rows)


# --- row-level pieces, shared with stats.py -------------------------------------------------------------------------


def _sum_by(where: NDArray[np.intp], values: Floats, size: int) -> Floats:
    """values summed per index (np.bincount with weights, which returns float64)."""
    return np.asarray(np.bincount(where, weights=values, minlength=size), dtype=np.float64)


def masses(y: Floats, s: NDArray[Any], w: Floats) -> tuple[NDArray[Any], Floats, Floats]:
    """(distinct scores ascending, positive weight at each, negative weight at each): all AUC needs."""
    keys, where = np.unique(s, return_inverse=True)
    positive = _sum_by(where, w * y, keys.size)
    negative = _sum_by(where, w * (1.0 - y), keys.size)
    return keys, positive, negative


def auc_of_masses(positive: Floats, negative: Floats) -> float | None:
    """AUC from label masses per distinct score (ascending): the weighted probability that a positive outranks a
    negative, a tie counting half (the trapezoidal ROC area sklearn.metrics.roc_auc_score computes)."""
    total_positive = float(positive.sum())
    total_negative = float(negative.sum())
    if total_positive <= 0.0 or total_negative <= 0.0:
        return None
    # Shares of each class's mass first: the product of two tiny totals would underflow to 0 (denormal weights).
    positive, negative = positive / total_positive, negative / total_negative
    below = np.cumsum(negative) - negative  # negative share at strictly lower scores
    return float(np.dot(positive, below + 0.5 * negative))


def row_log_loss(y: Floats, p: NDArray[Any]) -> Floats:
    """Each row's log loss, natural log. p is clipped to [eps, 1 - eps] with eps = np.finfo(p.dtype).eps, in p's
    own dtype, as sklearn.metrics.log_loss does since 1.5: a confident miss costs -log(eps) (about 36 for float64
    scores, 16 for float32), not infinity. The logarithms are taken in float64 whatever p's dtype."""
    eps = np.finfo(p.dtype).eps
    clipped = np.clip(p, eps, 1 - eps).astype(np.float64)
    losses: Floats = -np.where(y == 1.0, np.log(clipped), np.log1p(-clipped))
    return losses


def bin_edges(bins: int) -> Floats:
    """Equal-width calibration bins over [0, 1]: np.linspace(0, 1, bins + 1), as sklearn's calibration_curve."""
    if bins < 1:
        raise InvalidArgument(f"bins must be >= 1, got {bins}")
    return np.linspace(0.0, 1.0, bins + 1)


def bin_index(p: NDArray[Any], edges: Floats) -> NDArray[np.intp]:
    """Each score's bin: bin k holds edges[k] < p <= edges[k + 1], the first one 0.0 too (calibration_curve's
    rule, so a score on an edge such as 0.5 falls in the bin below it)."""
    return np.searchsorted(edges[1:-1], p, side="left")


@dataclass(frozen=True)
class Calibration:
    """Predicted against observed, per equal-width score bin. Arrays have one value per bin; `predicted` and
    `observed` are NaN where a bin holds no weight."""

    edges: Floats  # bins + 1 edges from 0 to 1
    count: NDArray[np.int64]  # rows per bin
    weight: Floats  # row weight per bin
    predicted: Floats  # weighted mean score per bin
    observed: Floats  # weighted rate of label 1 per bin

    @property
    def ece(self) -> float | None:
        """Expected calibration error: the mean of |observed - predicted| over bins, each bin weighted by its share
        of the total weight (empty bins weigh nothing). None when no row weighs anything."""
        total = float(self.weight.sum())
        if total <= 0.0:
            return None
        filled = self.weight > 0.0
        gaps = np.abs(self.observed[filled] - self.predicted[filled])
        return float(np.dot(self.weight[filled], gaps) / total)


def calibration_of_sums(
    edges: Floats, count: NDArray[np.int64], weight: Floats, score_sum: Floats, label_sum: Floats
) -> Calibration:
    """A Calibration from per-bin sums: rows, weight, sum of weight * score, sum of weight * label."""
    filled = weight > 0.0
    safe = np.where(filled, weight, 1.0)
    predicted = np.where(filled, score_sum / safe, np.nan)
    observed = np.where(filled, label_sum / safe, np.nan)
    return Calibration(edges, count.copy(), weight.copy(), predicted, observed)


def bin_sums(y: Floats, p: NDArray[Any], w: Floats, edges: Floats) -> tuple[NDArray[np.int64], Floats, Floats, Floats]:
    """Per bin: rows, weight, sum of weight * score, sum of weight * label."""
    bins = edges.size - 1
    where = bin_index(p, edges)
    count = np.bincount(where, minlength=bins).astype(np.int64)
    weight = _sum_by(where, w, bins)
    score_sum = _sum_by(where, w * p.astype(np.float64), bins)
    label_sum = _sum_by(where, w * y, bins)
    return count, weight, score_sum, label_sum


# --- binary label, score in [0, 1] ----------------------------------------------------------------------------------


def auc(y: ArrayLike, s: ArrayLike, w: ArrayLike | None = None) -> float | None:
    """Area under the ROC curve; ties count half, zero-weight rows count not at all (sklearn's roc_auc_score).
    Scores may be any finite reals here (only their order matters). None when either class has no weight."""
    labels, scores, weights = _binary(y, s, w, unit_interval=False)
    _, positive, negative = masses(labels, scores, weights)
    return auc_of_masses(positive, negative)


def log_loss(y: ArrayLike, p: ArrayLike, w: ArrayLike | None = None) -> float | None:
    """Weighted mean log loss (cross-entropy), natural log, p clipped as row_log_loss says."""
    labels, scores, weights = _binary(y, p, w, unit_interval=True)
    return weighted_mean(weights, row_log_loss(labels, scores))


def brier(y: ArrayLike, p: ArrayLike, w: ArrayLike | None = None) -> float | None:
    """Weighted mean of (y - p)^2 (sklearn's brier_score_loss for a binary label), in float64."""
    labels, scores, weights = _binary(y, p, w, unit_interval=True)
    return weighted_mean(weights, (labels - scores.astype(np.float64)) ** 2)


def calibration(y: ArrayLike, p: ArrayLike, w: ArrayLike | None = None, bins: int = DEFAULT_BINS) -> Calibration:
    """Per equal-width bin of p: rows, weight, mean predicted and observed rate (unweighted and without its empty
    bins, sklearn.calibration.calibration_curve(y, p, n_bins=bins) gives the same `observed`, `predicted`)."""
    labels, scores, weights = _binary(y, p, w, unit_interval=True)
    edges = bin_edges(bins)
    return calibration_of_sums(edges, *bin_sums(labels, scores, weights, edges))


def ece(y: ArrayLike, p: ArrayLike, w: ArrayLike | None = None, bins: int = DEFAULT_BINS) -> float | None:
    """Expected calibration error over `bins` equal-width bins (Calibration.ece)."""
    return calibration(y, p, w, bins).ece
