"""Live drift: bin served inputs and scores like the manifest baseline and export PSI gauges.

Counts cover a sliding window of the last `window`..2*`window` rows (two generations: when the current
one fills up, it becomes the previous one), so a shift shows up within a window and old traffic ages out.
`observe` is a fixed number of numpy calls per batch (one np.searchsorted bins every feature at once),
cheap enough for every request; gauges are refreshed every `export_every` rows or on `export()`.

Given the rows' slice labels (serving.slices: the answering model of a predictor that declares slices), the same
counts are kept per slice as well, with the same two generations, and exported as sibyl_slice_drift_psi once a slice
holds `min_rows` rows (a slice's own bins: one bincount for all of them).
"""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import Gauge

from sibyl.models.baseline import Binner, FeatureProjection
from sibyl.models.manifest import Manifest
from sibyl.observability.metrics import Metrics
from sibyl.observability.multiprocess import drop_series

PREDICTION = "__prediction__"
EPSILON = 1e-4  # floor for bin shares: an empty bin costs a bounded amount instead of infinity


def psi_segments(expected: np.ndarray, actual: np.ndarray, starts: np.ndarray, eps: float = EPSILON) -> np.ndarray:
    """PSI of K histograms laid end to end in two flat count arrays; histogram k starts at starts[k]."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    sizes = np.diff(np.append(starts, expected.size))
    p = np.maximum(expected / np.repeat(_nonzero(np.add.reduceat(expected, starts)), sizes), eps)
    q = np.maximum(actual / np.repeat(_nonzero(np.add.reduceat(actual, starts)), sizes), eps)
    return np.add.reduceat((q - p) * np.log(q / p), starts)


def _nonzero(totals: np.ndarray) -> np.ndarray:
    return np.where(totals > 0, totals, 1.0)


class DriftMonitor:
    """One per served model version that has baselines; features without a baseline are skipped."""

    def __init__(
        self,
        manifest: Manifest,
        metrics: Metrics,
        model: str | None = None,
        version: str | None = None,
        window: int = 10_000,
        min_rows: int = 200,
        export_every: int = 1_000,
    ) -> None:
        if manifest.baselines is None:
            raise ValueError(f"{manifest.ref} has no baselines; publish it with --sample to monitor drift")
        self.model, self.version = model or manifest.name, version or manifest.version
        self.window, self.min_rows, self.export_every = window, min_rows, export_every
        baselines = manifest.baselines
        self._has_prediction = baselines.prediction is not None
        self._project = FeatureProjection(manifest.inputs, only=baselines.features, extra=int(self._has_prediction))
        self.names = list(self._project.names)
        histograms = [baselines.features[name] for name in self.names]
        if baselines.prediction is not None:
            histograms.append(baselines.prediction)
            self.names.append(PREDICTION)
        if not histograms:
            raise ValueError(f"{manifest.ref}: its baselines cover none of its inputs and no prediction")
        self._binner = Binner([h.edges for h in histograms])
        self.expected = np.concatenate([np.asarray(h.counts, dtype=np.float64) for h in histograms])
        self._all = Generations(self.expected.size)
        self._slices: dict[str, Generations] = {}  # slice label -> its rows' counts
        self._since_export = 0
        self._lock = threading.Lock()  # shadows may observe from executor threads
        self._gauge_parent, self._slice_parent = metrics.drift_psi, metrics.slice_drift_psi
        self._gauges: list[Gauge] = []  # bound at the first export: no misleading 0 before min_rows
        self._slice_gauges: dict[str, list[Gauge]] = {}

    @classmethod
    def for_manifest(cls, manifest: Manifest, metrics: Metrics) -> DriftMonitor | None:
        """None when the version was published without baselines (nothing to compare with)."""
        b = manifest.baselines
        if b is None or (b.prediction is None and not set(b.features) & {s.name for s in manifest.inputs}):
            return None
        return cls(manifest, metrics)

    @property
    def rows(self) -> int:
        return self._all.rows

    def observe(self, matrix: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        """matrix: the model's float32 [N, columns] input; scores: [N] (the manifest's output column). Returns the
        rows' bins for observe_slices (None for no rows)."""
        n = matrix.shape[0]
        if n == 0:
            return None
        values = self._project(matrix)  # a fresh float64 scratch array the binner may overwrite
        if self._has_prediction:
            values[:, -1] = scores.reshape(n)
        bins = self._binner.bins(values)
        counts = np.bincount(bins.ravel(), minlength=self._binner.total).astype(np.float64)
        with self._lock:
            self._all.add(counts, n, self.window)
            self._since_export += n
            due = self.export_every > 0 and self._since_export >= self.export_every
        if due:
            self.export()
        return bins

    def observe_slices(self, bins: np.ndarray, slices: np.ndarray, labels: list[str]) -> None:
        """The same rows by slice, once their labels are known: bins from observe(); slices: label ids [D, N] (row
        0, "all", is skipped) into `labels` (serving.slices.Vocabulary.names). Verdicts call it when they flush,
        so labelling stays off the records thread (docs/performance.md#verdicts)."""
        by_slice = self._slice_counts(bins, slices, labels)
        with self._lock:
            for label, slice_counts, rows in by_slice:
                generations = self._slices.get(label)
                if generations is None:
                    generations = self._slices[label] = Generations(self.expected.size)
                generations.add(slice_counts, rows, self.window)

    def _slice_counts(
        self, bins: np.ndarray, slices: np.ndarray, labels: list[str]
    ) -> list[tuple[str, np.ndarray, int]]:
        """(label, its rows' flat counts, its rows) for every slice label present: one bincount per slice."""
        total = self._binner.total
        out = []
        for keys in slices[1:]:
            present = np.bincount(keys)
            flat = (keys[:, None].astype(np.intp) * total + bins).ravel()
            counts = np.bincount(flat, minlength=present.size * total).reshape(present.size, total)
            out += [(labels[k], counts[k].astype(np.float64), int(present[k])) for k in np.flatnonzero(present)]
        return out

    def export(self) -> dict[str, float]:
        """PSI per tracked feature and "__prediction__"; sets the gauges (and each slice's with min_rows rows).
        Empty until min_rows were seen."""
        with self._lock:
            self._since_export = 0
            if self.rows < self.min_rows:
                return {}
            actual = self._all.total()
            sliced = [(label, g.total()) for label, g in self._slices.items() if g.rows >= self.min_rows]
        values = psi_segments(self.expected, actual, self._binner.starts)
        if not self._gauges:
            self._gauges = [self._gauge_parent.labels(self.model, self.version, name) for name in self.names]
        for gauge, value in zip(self._gauges, values, strict=True):
            gauge.set(float(value))
        for label, counts in sliced:
            gauges = self._slice_gauges.get(label)
            if gauges is None:
                gauges = self._slice_gauges[label] = [
                    self._slice_parent.labels(self.model, self.version, label, name) for name in self.names
                ]
            for gauge, value in zip(gauges, psi_segments(self.expected, counts, self._binner.starts), strict=True):
                gauge.set(float(value))
        return dict(zip(self.names, values.tolist(), strict=True))

    def close(self) -> None:
        """Drop this version's gauges, e.g. when it is unloaded, so dashboards do not show stale PSI."""
        self._gauges = []
        for name in self.names:
            drop_series(self._gauge_parent, self.model, self.version, name)
        for label in self._slice_gauges:
            for name in self.names:
                drop_series(self._slice_parent, self.model, self.version, label, name)
        self._slice_gauges = {}


class Generations:
    """Counts of the last `window`..2*`window` rows: when the current generation fills, it becomes the previous."""

    def __init__(self, size: int) -> None:
        self.current = np.zeros(size)
        self.previous = np.zeros(size)
        self.held = [0, 0]  # rows in the current and the previous generation

    @property
    def rows(self) -> int:
        return self.held[0] + self.held[1]

    def add(self, counts: np.ndarray, rows: int, window: int) -> None:
        if self.held[0] >= window:
            self.previous, self.current = self.current, np.zeros_like(self.current)
            self.held = [0, self.held[0]]
        self.current += counts
        self.held[0] += rows

    def total(self) -> np.ndarray:
        return self.current + self.previous
