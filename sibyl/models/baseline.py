"""Baseline histograms for drift: fixed bins per feature and for the prediction, from a sample.

One value per feature and row is binned: the column itself for a float feature, the L2 norm of the vector
for a vector feature (one number that moves when an embedding's scale or sparsity shifts; per-dimension
drift of a rotated embedding is not caught). Edges are finite: quantiles of the sample, deduplicated, or
midpoints between the distinct values when a feature has at most `bins` of them (flags, small counts).
Values outside [first edge, last edge] are counted in the outer bins, so live data always lands somewhere.
The live side (sibyl.observability.drift) bins with the same `feature_values` and `bin_counts`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.models.manifest import Baselines, FeatureSpec, Histogram


def feature_values(inputs: Sequence[FeatureSpec], matrix: np.ndarray) -> np.ndarray:
    """[N, columns] model input -> [N, len(inputs)] float32: one drift value per feature (norm for vectors)."""
    width = sum(spec.dim for spec in inputs)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise InvalidArgument(f"expected a [rows, {width}] matrix for {len(inputs)} features, got {matrix.shape}")
    out = np.empty((matrix.shape[0], len(inputs)), dtype=np.float32)
    start = 0
    for i, spec in enumerate(inputs):
        block = matrix[:, start : start + spec.dim]
        out[:, i] = block[:, 0] if spec.dtype == "float" else np.sqrt(np.einsum("ij,ij->i", block, block))
        start += spec.dim
    return out


def make_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Finite, strictly increasing edges (len >= 2) for one feature's sample values."""
    distinct = np.unique(values)
    if distinct.size == 1:
        return np.array([distinct[0], distinct[0]], dtype=np.float64)  # one bin: everything lands in it
    if distinct.size <= bins:
        mids = (distinct[:-1].astype(np.float64) + distinct[1:]) / 2
        return np.concatenate([[distinct[0]], mids, [distinct[-1]]])
    return np.unique(np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin; bin i holds edges[i] <= v < edges[i+1], outer bins open-ended (clipped)."""
    index = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(index, minlength=len(edges) - 1).astype(np.float64)


def histogram(values: np.ndarray, bins: int) -> Histogram:
    if values.size == 0:
        raise InvalidArgument("cannot compute a baseline from an empty sample")
    if not np.all(np.isfinite(values)):
        raise InvalidArgument("baseline sample has NaN or infinite values; fill or drop them first")
    edges = make_edges(values, bins)
    return Histogram(edges=edges.tolist(), counts=bin_counts(values, edges).tolist())


def compute_baselines(
    manifest_inputs: list[FeatureSpec], matrix: np.ndarray, scores: np.ndarray, bins: int = 10
) -> Baselines:
    """Histograms of every feature (columns in manifest order) and of the model's scores on the sample."""
    if bins < 1:
        raise InvalidArgument(f"bins must be >= 1, got {bins}")
    values = feature_values(manifest_inputs, np.asarray(matrix, dtype=np.float32))
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if scores.shape[0] != values.shape[0]:
        raise InvalidArgument(f"{scores.shape[0]} scores for {values.shape[0]} sample rows")
    features = {}
    for i, spec in enumerate(manifest_inputs):
        try:
            features[spec.name] = histogram(values[:, i], bins)
        except InvalidArgument as exc:
            raise InvalidArgument(f"feature {spec.name}: {exc}") from None
    return Baselines(features=features, prediction=histogram(scores, bins))
