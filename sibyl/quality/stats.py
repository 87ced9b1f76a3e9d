"""Mergeable sufficient statistics: what a stream keeps per (model, slice, time bucket) so that buckets combine
later (an hour into a day, two evaluator instances into one total) and still give exactly the metrics binary.py
computes on all the rows at once.

BinaryStats holds the exact weighted (positive, negative) label mass per distinct score, keyed on the score's
float32 value (the prediction log stores float32), in sorted arrays: AUC needs nothing less, and merging is a
union by score. Beside them, running sums for log loss, Brier score, label rate and the calibration bins, so those
read in O(bins). Rows added go to a pending buffer first and are folded into the sorted arrays when the buffer
outgrows them (or on any read that needs them), so add() costs the rows' own sort, not the state's size.
RegressionStats (regression.py) keeps five sums. Neither is thread-safe: one owner adds, merges and reads.

to_bytes() is versioned and compact: one header byte (high nibble the kind, low nibble the format version), a
fixed header, the bins, then per distinct score 4 bytes of score and 2 masses of 1, 2, 4 or 8 bytes each (the
narrowest unsigned integer that holds them exactly, float64 otherwise): 6 bytes per distinct score with unit
weights and mostly distinct scores, 20 with fractional weights. docs/monitoring.md gives the layout.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sibyl.errors import InvalidArgument
from sibyl.quality import binary, inputs
from sibyl.quality.binary import Calibration
from sibyl.quality.inputs import Floats
from sibyl.quality.regression import RegressionStats

__all__ = ["BinaryStats", "RegressionStats"]  # RegressionStats lives in regression.py, beside mae and rmse

BINARY_FORMAT = 0x01  # kind 0 (binary), version 1
MIN_PENDING = 4096  # rows buffered before a fold even into small arrays (a fold costs ~a sort of both)
# Mass encodings in to_bytes: code -> dtype; integers only when every mass is a whole number within range.
MASS_TYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<u4"),
    0: np.dtype("<f8"),
}
_BINARY_HEAD = struct.Struct("<BBHQQdddd")  # format, mass code, bins, rows, distinct, weight, sums (label, loss, brier)


def _fold(keys: NDArray[np.float32], positive: Floats, negative: Floats) -> tuple[NDArray[np.float32], Floats, Floats]:
    """Sorted distinct keys with the masses of equal keys summed (a stable sort: sorted runs merge in linear time)."""
    if keys.size == 0:
        return keys, positive, negative
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.add.reduceat(positive[order], starts), np.add.reduceat(negative[order], starts)


def _mass_code(positive: Floats, negative: Floats) -> int:
    if positive.size == 0:
        return 1
    both = np.concatenate((positive, negative))
    if not np.all(both == np.floor(both)):
        return 0
    top = float(both.max())
    return next((code for code in (1, 2, 3) if top <= np.iinfo(MASS_TYPES[code]).max), 0)


class BinaryStats:
    """Sufficient statistics of a binary label and a score in [0, 1] (see the module docstring). Every metric equals
    binary.py's on the concatenated rows with the scores rounded to float32, to rounding (1e-12)."""

    __slots__ = (
        "_bin_count",
        "_bin_label",
        "_bin_score",
        "_bin_weight",
        "_brier_sum",
        "_edges",
        "_label_sum",
        "_log_loss_sum",
        "_negative",
        "_pending",
        "_pending_rows",
        "_positive",
        "_rows",
        "_scores",
        "_weight",
    )

    def __init__(self, bins: int = binary.DEFAULT_BINS) -> None:
        self._edges = binary.bin_edges(bins)
        self._rows = 0
        self._weight = 0.0
        self._label_sum = 0.0  # sum of w * y
        self._log_loss_sum = 0.0  # sum of w * row log loss
        self._brier_sum = 0.0  # sum of w * (y - p)^2
        self._bin_count = np.zeros(bins, dtype=np.int64)
        self._bin_weight = np.zeros(bins)
        self._bin_score = np.zeros(bins)  # sum of w * p per bin
        self._bin_label = np.zeros(bins)  # sum of w * y per bin
        self._scores = np.zeros(0, dtype=np.float32)
        self._positive = np.zeros(0)
        self._negative = np.zeros(0)
        self._pending: list[tuple[NDArray[np.float32], Floats, Floats]] = []
        self._pending_rows = 0

    # --- building -----------------------------------------------------------------------------------------------

    def add(self, y: ArrayLike, s: ArrayLike, w: ArrayLike | None = None) -> None:
        """Count these rows: labels 0/1, scores in [0, 1] (rounded to float32), optional weights >= 0."""
        labels = inputs.labels(y)
        checked = inputs.scores(s)
        rows = inputs.same_length(y=labels, s=checked)
        weights = inputs.weights(w, rows)
        if rows == 0:
            return
        scores = checked.astype(np.float32) + np.float32(0.0)  # + 0 turns -0.0 into 0.0: one key for zero
        wide = scores.astype(np.float64)
        label_mass = weights * labels
        self._rows += rows
        self._weight += float(weights.sum())
        self._label_sum += float(label_mass.sum())
        self._log_loss_sum += float(np.dot(weights, binary.row_log_loss(labels, scores)))
        self._brier_sum += float(np.dot(weights, (labels - wide) ** 2))
        count, weight, score_sum, label_sum = binary.bin_sums(labels, scores, weights, self._edges)
        self._bin_count += count
        self._bin_weight += weight
        self._bin_score += score_sum
        self._bin_label += label_sum
        self._pending.append((scores, label_mass, weights - label_mass))
        self._pending_rows += rows
        if self._pending_rows >= max(MIN_PENDING, self._scores.size):
            self._settle()

    def _settle(self) -> None:
        """Fold the pending rows into the sorted arrays."""
        if not self._pending:
            return
        parts = [(self._scores, self._positive, self._negative), *self._pending]
        self._scores, self._positive, self._negative = _fold(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )
        self._pending = []
        self._pending_rows = 0

    def merge(self, other: BinaryStats) -> BinaryStats:
        """A new BinaryStats of both sets of rows (associative and commutative, to rounding); neither changes."""
        return BinaryStats.combine((self, other), bins=self.bins)

    @staticmethod
    def combine(parts: Iterable[BinaryStats], bins: int | None = None) -> BinaryStats:
        """All parts merged in one pass (cheaper than chained merge() for many buckets). Parts share their number of
        bins (`bins`, by default the first part's; 10 when there is no part)."""
        chosen = list(parts)
        if bins is None:
            bins = chosen[0].bins if chosen else binary.DEFAULT_BINS
        out = BinaryStats(bins)
        for part in chosen:
            if part.bins != bins:
                raise InvalidArgument(f"cannot merge BinaryStats of {part.bins} bins into {bins} bins")
            part._settle()
            out._rows += part._rows
            out._weight += part._weight
            out._label_sum += part._label_sum
            out._log_loss_sum += part._log_loss_sum
            out._brier_sum += part._brier_sum
            out._bin_count += part._bin_count
            out._bin_weight += part._bin_weight
            out._bin_score += part._bin_score
            out._bin_label += part._bin_label
        if chosen:
            out._scores, out._positive, out._negative = _fold(
                np.concatenate([p._scores for p in chosen]),
                np.concatenate([p._positive for p in chosen]),
                np.concatenate([p._negative for p in chosen]),
            )
        return out

    # --- reading --------------------------------------------------------------------------------------------------

    @property
    def bins(self) -> int:
        return self._edges.size - 1

    @property
    def n(self) -> int:
        """Rows counted (whatever their weight)."""
        return self._rows

    @property
    def weight(self) -> float:
        """Total row weight (n with unit weights)."""
        return self._weight

    @property
    def distinct(self) -> int:
        """Distinct float32 scores held."""
        self._settle()
        return int(self._scores.size)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays: 20 bytes per distinct score, 20 per pending row, 32 per bin."""
        pending = sum(s.nbytes + p.nbytes + n.nbytes for s, p, n in self._pending)
        held = self._scores.nbytes + self._positive.nbytes + self._negative.nbytes
        bins = self._bin_count.nbytes + self._bin_weight.nbytes + self._bin_score.nbytes + self._bin_label.nbytes
        return held + pending + bins

    def masses(self) -> tuple[NDArray[np.float32], Floats, Floats]:
        """(distinct scores ascending, positive weight at each, negative weight at each), read-only copies."""
        self._settle()
        return self._scores.copy(), self._positive.copy(), self._negative.copy()

    def _mean(self, total: float) -> float | None:
        return total / self._weight if self._weight > 0.0 else None

    def label_rate(self) -> float | None:
        """Weighted share of rows with label 1."""
        return self._mean(self._label_sum)

    def log_loss(self) -> float | None:
        return self._mean(self._log_loss_sum)

    def brier(self) -> float | None:
        return self._mean(self._brier_sum)

    def calibration(self) -> Calibration:
        return binary.calibration_of_sums(
            self._edges, self._bin_count, self._bin_weight, self._bin_score, self._bin_label
        )

    def ece(self) -> float | None:
        return self.calibration().ece

    def auc(self) -> float | None:
        self._settle()
        return binary.auc_of_masses(self._positive, self._negative)

    def auc_se(self) -> float | None:
        """DeLong's standard error of this AUC alone, reading the masses as row counts (exact with unit weights;
        compare.delong gives the same). For an unpaired comparison of two models' stats; a paired one needs the
        rows (compare.py). None when a class has fewer than 2 rows of mass."""
        self._settle()
        value = binary.auc_of_masses(self._positive, self._negative)
        pos, neg = self._positive, self._negative
        total_pos, total_neg = float(pos.sum()), float(neg.sum())
        if value is None or total_pos < 2.0 or total_neg < 2.0:
            return None
        # A positive's placement: the share of negatives it outranks (ties half); a negative's, of positives below it.
        below_neg = np.cumsum(neg) - neg
        above_pos = total_pos - np.cumsum(pos)
        placed_pos = (below_neg + 0.5 * neg) / total_neg
        placed_neg = (above_pos + 0.5 * pos) / total_pos
        var_pos = float(np.dot(pos, (placed_pos - value) ** 2)) / (total_pos - 1.0)
        var_neg = float(np.dot(neg, (placed_neg - value) ** 2)) / (total_neg - 1.0)
        return float(np.sqrt(var_pos / total_pos + var_neg / total_neg))

    # --- bytes ----------------------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        self._settle()
        code = _mass_code(self._positive, self._negative)
        mass = MASS_TYPES[code]
        head = _BINARY_HEAD.pack(
            BINARY_FORMAT,
            code,
            self.bins,
            self._rows,
            self._scores.size,
            self._weight,
            self._label_sum,
            self._log_loss_sum,
            self._brier_sum,
        )
        arrays = (
            self._bin_count.astype("<i8"),
            self._bin_weight.astype("<f8"),
            self._bin_score.astype("<f8"),
            self._bin_label.astype("<f8"),
            self._scores.astype("<f4"),
            self._positive.astype(mass),
            self._negative.astype(mass),
        )
        return head + b"".join(a.tobytes() for a in arrays)

    @staticmethod
    def from_bytes(data: bytes) -> BinaryStats:
        """The BinaryStats to_bytes() wrote; InvalidArgument when `data` is not one (wrong kind, version, length)."""
        view = memoryview(data)
        if len(view) < _BINARY_HEAD.size or view[0] != BINARY_FORMAT:
            raise InvalidArgument(f"not a BinaryStats of format {BINARY_FORMAT:#04x}")
        _, code, bins, rows, distinct, weight, label_sum, loss_sum, brier_sum = _BINARY_HEAD.unpack_from(view)
        if code not in MASS_TYPES or bins < 1:
            raise InvalidArgument(f"BinaryStats bytes with mass code {code} and {bins} bins")
        mass = MASS_TYPES[code]
        expected = _BINARY_HEAD.size + 32 * bins + distinct * (4 + 2 * mass.itemsize)
        if len(view) != expected:
            raise InvalidArgument(f"BinaryStats bytes are {len(view)} long, their header says {expected}")
        out = BinaryStats(bins)
        out._rows, out._weight, out._label_sum, out._log_loss_sum, out._brier_sum = (
            rows,
            weight,
            label_sum,
            loss_sum,
            brier_sum,
        )
        at = _BINARY_HEAD.size

        def take(dtype: str | np.dtype[Any], count: int) -> NDArray[Any]:
            nonlocal at
            array = np.frombuffer(view, dtype=dtype, count=count, offset=at)
            at += array.nbytes
            return array

        out._bin_count = take("<i8", bins).astype(np.int64)
        out._bin_weight, out._bin_score, out._bin_label = (take("<f8", bins).astype(np.float64) for _ in range(3))
        out._scores = take("<f4", distinct).astype(np.float32)
        out._positive = take(mass, distinct).astype(np.float64)
        out._negative = take(mass, distinct).astype(np.float64)
        if distinct and not (
            np.all(out._scores[1:] > out._scores[:-1]) and out._scores[0] >= 0.0 and out._scores[-1] <= 1.0
        ):
            raise InvalidArgument("BinaryStats bytes hold scores that are not distinct, sorted and in [0, 1]")
        masses = np.concatenate((out._positive, out._negative))
        if masses.size and (not np.all(np.isfinite(masses)) or masses.min() < 0.0):
            raise InvalidArgument("BinaryStats bytes hold label masses that are not finite and >= 0")
        return out
