"""Verdicts on live traffic: every shadow and arm against the primary on the same rows, and the primary's own
output, by slice (docs/observability.md#verdicts).

The after-response work hands over each call's scores (`answered` for the model that answered, `compared` for a
candidate scored on the same rows as the primary) with the call's rows (`CallSlices`): a list append, no numpy;
for a small call that runs on the event loop (serving.after_response), so it never flushes itself.
`flush` does everything else in bulk: it labels the rows of every pending call in one assignment per slice
(serving.slice_rows.MergedRows), computes decisions and deltas over all of them, then counts each model's
histogram and decisions for every slice at once (`_tally`: one bincount of (label, bucket, decision) cells), and
feeds the rank-agreement windows, refreshing those that are due. It runs on a thread of its own every FLUSH_EVERY_S
(paced: sibyl.gil), before every scrape, and at once when FLUSH_ROWS rows wait (the adder wakes the thread; only a
thread that fell FLUSH_ROWS_HARD behind makes the adder flush, to bound memory): its cost is spread over however
many calls came in meanwhile, so what is left is work per row (docs/performance.md#verdicts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sibyl.compat.prometheus_buckets import add_tallied, bucket_index, fast_path_taken, observe_many
from sibyl.gil import enroll, pace
from sibyl.models.drift import DriftMonitor
from sibyl.models.predictor import PredictorConfig
from sibyl.models.runtime import OnnxModel
from sibyl.observability.metrics import DELTA_BUCKETS, SCORE_BUCKETS, Metrics
from sibyl.observability.multiprocess import drop_series
from sibyl.serving.rank_window import RankWindow
from sibyl.serving.slice_rows import MergedRows, ServedRows, Snapshot
from sibyl.serving.slices import Slicer

log = logging.getLogger(__name__)
FLUSH_ROWS = 65_536  # rows pending that wake the flusher thread before its time (~3 MB)
FLUSH_ROWS_HARD = 4 * FLUSH_ROWS  # rows pending at which the adding thread flushes itself: a bound on memory
FLUSH_EVERY_S = 1.0  # the flusher thread: the metrics lag the calls by at most this (a scrape flushes first)
SETTINGS = ("decision_threshold", "alert_agreement", "positive_rate_shift")
JOINT_CELLS = 4_096  # (bucket, decision) cells per label up to which decisions share the histogram's bincount


def decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Each row's decision: 1 when its score >= threshold (one output column), else its arg-max class."""
    if scores.shape[1] == 1:
        return (scores[:, 0] >= threshold).astype(np.int32)
    chosen: np.ndarray = np.argmax(scores, axis=1).astype(np.int32)
    return chosen


def decision_name(dim: int, decision: int) -> str:
    if dim == 1:
        return "positive" if decision else "negative"
    return f"class_{decision}"


def groups(keys: np.ndarray, last: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(key, indices of the rows with it) for each key present, ascending: one sort for all of them. `last`: only
    the last that many rows of each key (a rank window keeps no more)."""
    order = np.argsort(keys.astype(np.uint16), kind="stable")  # 16-bit keys: numpy's radix sort
    counts = np.bincount(keys)
    start = 0
    for key in np.flatnonzero(counts).tolist():
        end = start + int(counts[key])
        yield key, order[start if last is None else max(start, end - last) : end]
        start = end


class CallSlices:
    """One call's rows until a flush labels them, then its slice labels [1 + slices, rows] (a shadow's comparison
    may come after that flush)."""

    __slots__ = ("labels", "queued", "rows")

    def __init__(self, rows: Snapshot) -> None:
        self.rows: Snapshot | None = rows
        self.labels: np.ndarray | None = None
        self.queued = False  # in its predictor's queue of calls to label


class PredictorVerdicts:
    """One predictor's slices and what waits for the metrics. `configure` runs when its config changes."""

    def __init__(self, name: str, metrics: Metrics, wake: Callable[[], object] = lambda: None) -> None:
        self.name, self.metrics = name, metrics
        self._wake = wake  # asks the flusher thread to flush now (FLUSH_ROWS pending)
        self.slicer = Slicer()
        self.config: PredictorConfig | None = None
        self.threshold = 0.5
        self.window, self.every_s = 10_000, 5.0
        self._lock = threading.Lock()  # guards the pending lists: records and shadow threads add
        self._flush_lock = threading.Lock()  # one flush at a time: windows and children are not thread-safe
        self._slice_lock = threading.Lock()  # the slicer: configured on the records thread, assigned by the flush
        # (name, version, dim) -> [(call, scores [n, dim])]
        self._answered: dict[tuple[str, str, int], list[tuple[CallSlices, np.ndarray]]] = {}
        # drift monitor -> [(call, the rows' drift bins)]: the answer's drift by slice
        self._drifted: dict[DriftMonitor, list[tuple[CallSlices, np.ndarray]]] = {}
        # (name, version, role) -> [(call, primary [n, k], candidate [n, k])]
        self._compared: dict[tuple[str, str, str], list[tuple[CallSlices, np.ndarray, np.ndarray]]] = {}
        self._unlabelled: list[CallSlices] = []  # calls whose rows wait for labels, in arrival order
        self._pending = 0
        self._children: dict[tuple[Any, ...], Any] = {}
        self._windows: dict[tuple[str, str, int], RankWindow] = {}

    def configure(self, config: PredictorConfig) -> None:
        with self._slice_lock:
            self.slicer.configure(config.slices)
        self.threshold = config.decision_threshold
        self.window, self.every_s = config.rank_agreement.window, config.rank_agreement.every_s
        gauge = self.metrics.predictor_setting
        for setting in SETTINGS:
            value = getattr(config, setting)
            if value is None:
                drop_series(gauge, self.name, setting)
            else:
                gauge.labels(self.name, setting).set(float(value))
        self.config = config

    def calls_rows(self, rows: ServedRows) -> CallSlices:
        """A call's rows as its slices will read them when the flush labels them."""
        return CallSlices(Snapshot(rows, self.slicer.active))

    def drifted(self, monitor: DriftMonitor, bins: np.ndarray, call: CallSlices) -> None:
        """The answering model's drift bins of these rows (a sampled call): counted by slice when they are labelled."""
        self._add(self._drifted, monitor, call, (call, bins), 0)

    def answered(self, model: OnnxModel, call: CallSlices, scores: np.ndarray) -> None:
        """The model that answered (primary or arm) scored these rows."""
        self._add(self._answered, (model.name, model.version, scores.shape[1]), call, (call, scores), scores.shape[0])

    def compared(
        self, model: OnnxModel, role: str, call: CallSlices, primary: np.ndarray, candidate: np.ndarray
    ) -> None:
        """A candidate (shadow, arm, extra) scored the same rows as the primary."""
        item = (call, primary, candidate)
        self._add(self._compared, (model.name, model.version, role), call, item, primary.shape[0])

    def _add(self, pending: dict[Any, Any], key: Any, call: CallSlices, item: Any, rows: int) -> None:
        with self._lock:
            pending.setdefault(key, []).append(item)
            if not call.queued:
                call.queued = True
                self._unlabelled.append(call)
            self._pending += rows
            waiting = self._pending
        if waiting >= FLUSH_ROWS_HARD:  # the flusher fell behind: the adder pays, so memory stays bounded
            self.flush()
        elif waiting >= FLUSH_ROWS:  # the adder may be the event loop: the flusher thread flushes, now
            self._wake()

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                answered, compared, self._answered, self._compared = self._answered, self._compared, {}, {}
                drifted, self._drifted = self._drifted, {}
                self._pending = 0
            self._label()
            depth = 1 + len(self.slicer.active)

            def current(call: CallSlices) -> bool:  # a call labelled before a change of slices is left out
                return call.labels is not None and call.labels.shape[0] == depth

            for model, answers in answered.items():
                pace()  # between stages the flusher thread gives the GIL back (sibyl.gil.pacing)
                if kept_answers := [i for i in answers if current(i[0])]:
                    self._flush_answered(model, kept_answers)
            for candidate, pairs in compared.items():
                pace()
                if kept_pairs := [i for i in pairs if current(i[0])]:
                    self._flush_compared(candidate, kept_pairs)
            names = self.slicer.vocabulary.names
            for monitor, sampled in drifted.items():  # one count by slice per model and flush, for all its calls
                pace()
                kept = [(call.labels, bins) for call, bins in sampled if current(call)]
                if kept:
                    labels = np.concatenate([labels for labels, _ in kept], axis=1)
                    monitor.observe_slices(np.concatenate([bins for _, bins in kept]), labels, names)

    def _label(self) -> None:
        """Every queued call, in arrival order, in one assignment per slice; each call keeps a view of its labels."""
        with self._lock:
            queued, self._unlabelled = self._unlabelled, []
        with self._slice_lock:
            if not queued:
                return
            merged = MergedRows([c.rows for c in queued if c.rows is not None])  # each call is queued once
            labels = self.slicer.assign(merged)
            for call, start, end in zip(queued, merged.offsets, merged.offsets[1:], strict=False):
                call.labels, call.rows = labels[:, start:end], None

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _flush_answered(self, key: tuple[str, str, int], items: list[tuple[CallSlices, np.ndarray]]) -> None:
        model, version, dim = key
        labels = np.concatenate([call.labels for call, _ in items], axis=1)
        all_scores = np.concatenate([scores for _, scores in items])
        chosen, scores = decisions(all_scores, self.threshold), all_scores[:, 0].astype(np.float64)
        names, classes = self.slicer.vocabulary.names, max(2, dim)
        joint = classes * (len(SCORE_BUCKETS) + 1) <= JOINT_CELLS  # decisions counted in the histogram's bincount
        counts, sums = self._tally(labels, scores, SCORE_BUCKETS, chosen if joint else None, classes if joint else 1)
        if joint:
            by_decision = counts.sum(axis=1)
        else:  # many classes: their own bincount, not one cell per (bucket, class)
            by_decision = np.bincount((labels * classes + chosen).ravel(), minlength=len(names) * classes)
            by_decision = by_decision.reshape(len(names), classes)
        for label, decision in zip(*np.nonzero(by_decision), strict=True):
            child = self._child(
                self.metrics.decisions, self.name, model, version, names[label], decision_name(dim, int(decision))
            )
            child.inc(int(by_decision[label, decision]))
        self._observe(labels, scores, counts.sum(axis=2), sums,
                      lambda label: self._child(self.metrics.slice_scores, self.name, model, version, names[label]))  # fmt: skip

    def _differences(self, primary: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: |candidate - primary| (the largest over columns) and whether their decisions agree."""
        if primary.shape[1] == 1:
            p, c = primary[:, 0], candidate[:, 0]
            return np.abs(c - p), (c >= self.threshold) == (p >= self.threshold)
        delta = np.abs(candidate - primary).max(axis=1)
        return delta, decisions(candidate, self.threshold) == decisions(primary, self.threshold)

    def _tally(
        self, labels: np.ndarray, values: np.ndarray, bounds: tuple[float, ...], outcome: np.ndarray | None, kinds: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows by (label, bucket of their value, outcome) [labels, buckets, kinds] and the sum of their values by
        label: one bincount over every slice row at once (a label id belongs to one slice), then one weighted
        bincount per slice row, in row order as Histogram.observe would add them. Per-row passes over the slice rows
        were most of the flush (docs/performance.md#verdicts)."""
        size, width = len(self.slicer.vocabulary.names), len(bounds) + 1  # + the +Inf bucket
        cells = bucket_index(values, bounds)
        if outcome is not None:
            cells = cells * kinds + outcome
        codes = (labels * (width * kinds) + cells).ravel()  # cells repeat over the slice rows
        counts = np.bincount(codes, minlength=size * width * kinds).reshape(size, width, kinds)
        sums = np.zeros(size)
        for row in labels:  # each label's rows sit in one slice row: the others add exact zeros
            sums += np.bincount(row, weights=values, minlength=size)
        return counts, sums

    @staticmethod
    def _observe(labels: np.ndarray, values: np.ndarray, counts: np.ndarray, sums: np.ndarray, child: Any) -> None:
        """The tallied rows into their labels' children of one histogram: counts [labels, buckets], sums [labels]."""
        for label in np.flatnonzero(counts.sum(axis=1)).tolist():
            histogram = child(label)
            if not fast_path_taken(histogram):  # a prometheus_client without the internals: observe each row
                observe_many(histogram, values[(labels == label).any(axis=0)])
                continue
            add_tallied(histogram, counts[label], float(sums[label]))

    def _window(self, model: str, version: str, label: int) -> RankWindow:
        window = self._windows.get((model, version, label))
        if window is None:
            window = self._windows[(model, version, label)] = RankWindow(self.window, self.every_s)
        return window

    def _flush_compared(
        self, key: tuple[str, str, str], items: list[tuple[CallSlices, np.ndarray, np.ndarray]]
    ) -> None:
        model, version, role = key
        labels = np.concatenate([call.labels for call, _, _ in items], axis=1)
        # A model with another output width than the primary's is compared on the first column only.
        pairs = [(p, c) if p.shape == c.shape else (p[:, :1], c[:, :1]) for _, p, c in items]
        widths = {p.shape[1] for p, _ in pairs}
        if len(widths) > 1:
            pairs = [(p[:, :1], c[:, :1]) for p, c in pairs]
        both = np.concatenate([p for p, _ in pairs]), np.concatenate([c for _, c in pairs])
        delta, agree = self._differences(*both)
        primary, candidate = both[0][:, 0], both[1][:, 0]
        names = self.slicer.vocabulary.names
        delta = delta.astype(np.float64)
        counts, sums = self._tally(labels, delta, DELTA_BUCKETS, agree.astype(np.intp), 2)
        by_outcome = counts.sum(axis=1)
        for label, agreed in zip(*np.nonzero(by_outcome), strict=True):
            outcome = "agree" if agreed else "disagree"
            child = self._child(self.metrics.shadow_decisions, self.name, model, version, role, names[label], outcome)
            child.inc(int(by_outcome[label, agreed]))
        self._observe(labels, delta, counts.sum(axis=2), sums,
                      lambda label: self._child(self.metrics.shadow_abs_delta, self.name, model, version, role,
                                                names[label]))  # fmt: skip
        now = time.monotonic()
        if primary.size:
            self._window(model, version, 0).add(primary, candidate)  # "all": every row, no gather
        for row in labels[1:]:
            for label, rows in groups(row, last=self.window):
                self._window(model, version, label).add(primary[rows], candidate[rows])
        for (m, v, label), window in self._windows.items():
            if m == model and v == version and window.due(now):
                value = window.spearman(now)
                if value is not None:
                    self._child(self.metrics.shadow_rank_agreement, self.name, m, v, names[label]).set(value)


class Verdicts:
    """Every predictor's verdict state, by name, and the thread that flushes it every FLUSH_EVERY_S."""

    def __init__(self, metrics: Metrics, flush_every_s: float = FLUSH_EVERY_S) -> None:
        self.metrics, self.flush_every_s = metrics, flush_every_s
        self._predictors: dict[str, PredictorVerdicts] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()  # FLUSH_ROWS pending somewhere: flush before flush_every_s is up
        self._flusher: threading.Thread | None = None

    def of(self, config: PredictorConfig) -> PredictorVerdicts:
        """This predictor's state, configured by this config (records thread)."""
        state = self._predictors.get(config.name)
        if state is None:
            state = self._predictors[config.name] = PredictorVerdicts(config.name, self.metrics, self._wake.set)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, name="sibyl-verdicts", daemon=True)
                self._flusher.start()
        if state.config is not config:
            state.configure(config)
        return state

    def flush(self) -> None:
        for state in list(self._predictors.values()):
            pace()  # a no-op but on the flusher thread (a scrape's flush does not wait)
            state.flush()

    def _flush_forever(self) -> None:
        enroll()  # pace() gives the GIL back between the flush's stages on this thread only
        while True:
            self._wake.wait(self.flush_every_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # a bug here must not end the flushing
                log.exception("flushing the verdicts failed")

    def close(self) -> None:
        """Flush what is pending and end the thread."""
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(5.0)
        self.flush()
