"""Baseline histograms for drift: fixed bins per feature and for the prediction, from a sample.

One value per feature and row is binned: the column itself for a float feature, the L2 norm of the vector
for a vector feature (one number that moves when an embedding's scale or sparsity shifts; per-dimension
drift of a rotated embedding is not caught). Edges are finite: quantiles of the sample, deduplicated, or
midpoints between the distinct values when a feature has at most `bins` of them (flags, small counts).
Values outside [first edge, last edge] are counted in the outer bins, so live data always lands somewhere.
The live side (sibyl.models.drift) bins with the same `FeatureProjection` and `Binner`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.models.manifest import Baselines, FeatureSpec, Histogram


class FeatureProjection:
    """[N, columns] model input -> [N, features + extra] float64: one drift value per feature (L2 norm for
    vectors), for the features named in `only` (default all), in input order; `extra` trailing columns are
    left for the caller (the scores). Index plans are built once: a fixed few numpy calls per batch.
    """

    def __init__(self, inputs: Sequence[FeatureSpec], only: Collection[str] | None = None, extra: int = 0) -> None:
        self.width = sum(spec.dim for spec in inputs)
        starts = np.cumsum([0] + [spec.dim for spec in inputs[:-1]]).astype(np.intp)
        kept = [i for i, spec in enumerate(inputs) if only is None or spec.name in only]
        self.names = [inputs[i].name for i in kept]
        self.n_out = len(kept) + extra
        scalar = [(pos, i) for pos, i in enumerate(kept) if inputs[i].dtype == "float"]
        self._scalar_out = np.array([pos for pos, _ in scalar], dtype=np.intp)
        self._scalar_cols = np.array([starts[i] for _, i in scalar], dtype=np.intp)
        self._vectors = [
            (pos, int(starts[i]), int(starts[i]) + inputs[i].dim)
            for pos, i in enumerate(kept)
            if inputs[i].dtype != "float"
        ]

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.ndim != 2 or matrix.shape[1] != self.width:
            raise InvalidArgument(f"expected a [rows, {self.width}] matrix, got {matrix.shape}")
        out = np.empty((matrix.shape[0], self.n_out), dtype=np.float64)
        out[:, self._scalar_out] = matrix[:, self._scalar_cols]
        for pos, start, stop in self._vectors:
            block = matrix[:, start:stop]
            out[:, pos] = np.sqrt(np.einsum("ij,ij->i", block, block))
        return out


def feature_values(inputs: Sequence[FeatureSpec], matrix: np.ndarray) -> np.ndarray:
    """One drift value per feature and row, [N, len(inputs)]; see FeatureProjection."""
    return FeatureProjection(inputs)(matrix)


def make_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Finite, strictly increasing edges (len >= 2) for one feature's sample values."""
    distinct = np.unique(values)
    if distinct.size == 1:
        return np.array([distinct[0], distinct[0]], dtype=np.float64)  # one bin: everything lands in it
    if distinct.size <= bins:
        mids = (distinct[:-1].astype(np.float64) + distinct[1:]) / 2
        return np.concatenate([[distinct[0]], mids, [distinct[-1]]])
    return np.unique(np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)))


class Binner:
    """Bins K columns at once, each with its own edges, in a fixed handful of numpy calls per batch.

    Each column is scaled into [0, 1] by its outer edges (clipped: outer bins are open-ended; NaN goes to
    the first bin) and shifted to [2k, 2k + 1], so all inner edges form one sorted array and a single
    np.searchsorted bins the whole [N, K] matrix. Scaling and shifting are monotone under IEEE rounding, and
    baselines and live traffic both go through this class, so both sides bin identically.
    Bin i of a column holds edges[i] <= v < edges[i + 1].
    """

    def __init__(self, edges: Sequence[Sequence[float] | np.ndarray]) -> None:
        self.sizes = np.array([len(e) - 1 for e in edges], dtype=np.intp)  # bins per column
        if len(edges) == 0 or np.any(self.sizes < 1):
            raise InvalidArgument("every histogram needs at least 2 edges")
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.intp)
        self.total = int(self.sizes.sum())
        arrays = [np.asarray(e, dtype=np.float64) for e in edges]
        for k, arr in enumerate(arrays):
            if not np.all(np.isfinite(arr)) or np.any(np.diff(arr) < 0):
                raise InvalidArgument(f"histogram {k}: edges must be finite and increasing, got {arr.tolist()}")
        self._lo = np.array([a[0] for a in arrays])
        span = np.array([a[-1] - a[0] for a in arrays])
        self._inv_span = 1.0 / np.where(span > 0, span, 1.0)
        self._shift = 2.0 * np.arange(len(arrays))
        self._inner = np.concatenate([self._scale(a[1:-1].copy(), k) for k, a in enumerate(arrays)])
        self._column = np.arange(len(arrays), dtype=np.intp)  # flat bin = global inner-edge rank + column

    def _scale(self, z: np.ndarray, k: int | slice = slice(None)) -> np.ndarray:
        """In place: the same float64 operations for edges and values, so ties resolve the same way."""
        z -= self._lo[k]
        z *= self._inv_span[k]
        np.fmax(z, 0.0, out=z)  # fmax/fmin turn NaN into 0: the first bin
        np.fmin(z, 1.0, out=z)
        z += self._shift[k]
        return z

    def counts(self, values: np.ndarray) -> np.ndarray:
        """[N, K] values -> flat counts [total bins]; column k owns bins starts[k] : starts[k] + sizes[k].

        Overwrites `values` when it is already float64 (callers pass a scratch array)."""
        return np.bincount(self.bins(values).ravel(), minlength=self.total).astype(np.float64)

    def bins(self, values: np.ndarray) -> np.ndarray:
        """[N, K] values -> [N, K] flat bin numbers (as counts(), before counting). Overwrites float64 `values`."""
        z = self._scale(np.asarray(values, dtype=np.float64))
        ranks = np.searchsorted(self._inner, z, side="right")
        ranks += self._column
        return ranks

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        return np.split(flat, self.starts[1:])


def compute_baselines(
    manifest_inputs: list[FeatureSpec], matrix: np.ndarray, scores: np.ndarray, bins: int = 10
) -> Baselines:
    """Histograms of every feature (columns in manifest order) and of the model's scores on the sample."""
    if bins < 1:
        raise InvalidArgument(f"bins must be >= 1, got {bins}")
    values = feature_values(manifest_inputs, np.asarray(matrix, dtype=np.float32))
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if values.shape[0] == 0 or scores.shape[0] != values.shape[0]:
        raise InvalidArgument(
            f"need a non-empty sample, one score per row: {scores.shape[0]} scores, {values.shape[0]} rows"
        )
    values = np.concatenate([values, scores[:, None]], axis=1)
    names = [spec.name for spec in manifest_inputs]
    for k, name in enumerate([*names, "prediction"]):
        if not np.all(np.isfinite(values[:, k])):
            raise InvalidArgument(f"baseline sample: {name} has NaN or infinite values; fill or drop them first")
    edges = [make_edges(values[:, k], bins) for k in range(values.shape[1])]
    binner = Binner(edges)
    counts = binner.split(binner.counts(values.copy()))
    hists = [Histogram(edges=e.tolist(), counts=c.tolist()) for e, c in zip(edges, counts, strict=True)]
    return Baselines(features=dict(zip(names, hists, strict=False)), prediction=hists[-1])
