"""Quality of a regression model: MAE and RMSE on whole arrays, and RegressionStats, their mergeable sufficient
statistics (what stats.BinaryStats is for a binary label). Errors are e = y_hat - y; weights as in binary.py."""

from __future__ import annotations

import struct

import numpy as np
from numpy.typing import ArrayLike

from sibyl.errors import InvalidArgument
from sibyl.quality import inputs
from sibyl.quality.inputs import Floats

REGRESSION_FORMAT = 0x11  # to_bytes' header byte: kind 1 (regression), version 1
_REGRESSION_HEAD = struct.Struct("<BQdddd")  # format, rows, weight, sum w*e, sum w*|e|, sum w*e^2


def _errors(y: ArrayLike, y_hat: ArrayLike, w: ArrayLike | None) -> tuple[Floats, Floats]:
    target = inputs.targets(y, "y")
    predicted = inputs.targets(y_hat, "y_hat")
    rows = inputs.same_length(y=target, y_hat=predicted)
    return predicted - target, inputs.weights(w, rows)


def weighted_mean(weights: Floats, values: Floats) -> float | None:
    """sum(w * v) / sum(w); None when the weights sum to 0 (every metric's "no rows")."""
    total = float(weights.sum())
    return float(np.dot(weights, values) / total) if total > 0.0 else None


def mae(y: ArrayLike, y_hat: ArrayLike, w: ArrayLike | None = None) -> float | None:
    """Weighted mean absolute error; None when no row weighs anything."""
    errors, weights = _errors(y, y_hat, w)
    return weighted_mean(weights, np.abs(errors))


def rmse(y: ArrayLike, y_hat: ArrayLike, w: ArrayLike | None = None) -> float | None:
    """Root of the weighted mean squared error; None when no row weighs anything."""
    errors, weights = _errors(y, y_hat, w)
    mse = weighted_mean(weights, errors**2)
    return None if mse is None else float(np.sqrt(mse))


class RegressionStats:
    """Sufficient statistics of a regression target: rows, weight and weighted sums of the error e = y_hat - y, |e|
    and e^2. MAE, RMSE and bias equal binary.mae / rmse on the concatenated rows, to rounding."""

    __slots__ = ("_abs_sum", "_error_sum", "_rows", "_square_sum", "_weight")

    def __init__(self) -> None:
        self._rows = 0
        self._weight = 0.0
        self._error_sum = 0.0
        self._abs_sum = 0.0
        self._square_sum = 0.0

    def add(self, y: ArrayLike, y_hat: ArrayLike, w: ArrayLike | None = None) -> None:
        errors, weights = _errors(y, y_hat, w)
        self._rows += errors.size
        self._weight += float(weights.sum())
        self._error_sum += float(np.dot(weights, errors))
        self._abs_sum += float(np.dot(weights, np.abs(errors)))
        self._square_sum += float(np.dot(weights, errors**2))

    def merge(self, other: RegressionStats) -> RegressionStats:
        out = RegressionStats()
        out._rows = self._rows + other._rows
        out._weight = self._weight + other._weight
        out._error_sum = self._error_sum + other._error_sum
        out._abs_sum = self._abs_sum + other._abs_sum
        out._square_sum = self._square_sum + other._square_sum
        return out

    @property
    def n(self) -> int:
        return self._rows

    @property
    def weight(self) -> float:
        return self._weight

    @property
    def nbytes(self) -> int:
        return _REGRESSION_HEAD.size

    def _mean(self, total: float) -> float | None:
        return total / self._weight if self._weight > 0.0 else None

    def mae(self) -> float | None:
        return self._mean(self._abs_sum)

    def rmse(self) -> float | None:
        mse = self._mean(self._square_sum)
        return None if mse is None else float(np.sqrt(mse))

    def bias(self) -> float | None:
        """Weighted mean of y_hat - y: > 0 when the model over-predicts."""
        return self._mean(self._error_sum)

    def to_bytes(self) -> bytes:
        return _REGRESSION_HEAD.pack(
            REGRESSION_FORMAT, self._rows, self._weight, self._error_sum, self._abs_sum, self._square_sum
        )

    @staticmethod
    def from_bytes(data: bytes) -> RegressionStats:
        if len(data) != _REGRESSION_HEAD.size or data[0] != REGRESSION_FORMAT:
            raise InvalidArgument(f"not a RegressionStats of format {REGRESSION_FORMAT:#04x}")
        out = RegressionStats()
        _, out._rows, out._weight, out._error_sum, out._abs_sum, out._square_sum = _REGRESSION_HEAD.unpack(data)
        return out
