"""The inputs every metric takes, checked and converted once: binary labels, scores, regression targets and row
weights as 1-D numpy arrays of one length. A wrong input raises InvalidArgument (also a ValueError) that names the
argument; no metric ever returns a number computed from a malformed input."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sibyl.errors import InvalidArgument

Floats = NDArray[np.float64]


def _vector(values: ArrayLike, name: str, dtype: type[np.float64] | None = None) -> NDArray[Any]:
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{name} must be numbers: {e}") from None
    if array.ndim != 1:
        raise InvalidArgument(f"{name} must be one value per row (1-D), got shape {array.shape}")
    return array


def labels(y: ArrayLike, name: str = "y") -> Floats:
    """Binary labels as float64 0.0 / 1.0 (bools, ints and floats accepted; anything else, NaN included, refused)."""
    array = _vector(y, name, np.float64)
    if not np.all((array == 0.0) | (array == 1.0)):
        raise InvalidArgument(f"{name} must hold binary labels 0 or 1")
    return array


def scores(s: ArrayLike, name: str = "s", unit_interval: bool = True) -> NDArray[np.floating[Any]]:
    """Scores in their own float dtype (float32 stays float32: log loss clips by the dtype's precision); other dtypes
    become float64. Finite always; within [0, 1] when `unit_interval` (probabilities)."""
    array = _vector(s, name)
    if not np.issubdtype(array.dtype, np.floating):
        array = _vector(array, name, np.float64)
    if array.size and not np.all(np.isfinite(array)):
        raise InvalidArgument(f"{name} must be finite (no NaN or infinity)")
    if unit_interval and array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise InvalidArgument(f"{name} must be probabilities in [0, 1], got values in [{array.min()}, {array.max()}]")
    return array


def targets(values: ArrayLike, name: str) -> Floats:
    """Regression targets or predictions: finite float64."""
    array = _vector(values, name, np.float64)
    if array.size and not np.all(np.isfinite(array)):
        raise InvalidArgument(f"{name} must be finite (no NaN or infinity)")
    return array


def weights(w: ArrayLike | None, rows: int) -> Floats:
    """Row weights as float64, finite and >= 0; None means every row weighs 1."""
    if w is None:
        return np.ones(rows, dtype=np.float64)
    array = _vector(w, "w", np.float64)
    if array.size != rows:
        raise InvalidArgument(f"w has {array.size} values for {rows} rows")
    if array.size and (not np.all(np.isfinite(array)) or array.min() < 0.0):
        raise InvalidArgument("w must be finite and >= 0")
    return array


def same_length(**arrays: NDArray[Any]) -> int:
    """The common row count; InvalidArgument naming the lengths when they differ."""
    sizes = {name: int(a.size) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidArgument("one value per row in each of " + ", ".join(f"{k} ({v})" for k, v in sizes.items()))
    return next(iter(sizes.values()), 0)
