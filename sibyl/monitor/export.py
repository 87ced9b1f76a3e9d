"""The monitor's /metrics: quality per (predictor, model, version, role, slice) over the last 24 hours and the whole
window, and the join's own counts, computed from the partitions' statistics when scraped.

Windows are hour buckets of *prediction* time (when the server answered), so a late outcome lands in the hour of its
prediction: the newest hours fill in as outcomes arrive (docs/monitoring.md#metrics).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sibyl.monitor.state import HOUR_NS, RESULTS, model_parts
from sibyl.quality.regression import RegressionStats
from sibyl.quality.stats import BinaryStats

WINDOWS = {"24h": 24, "7d": 24 * 7}
LABELS = ["predictor", "model", "version", "role", "slice", "window"]
QUALITY = {
    "auc": "Area under the ROC curve of the model's scores against the outcomes.",
    "log_loss": "Mean log loss (outcome in {0, 1}).",
    "brier": "Mean squared difference of score and outcome.",
    "ece": "Expected calibration error over 10 equal-width score bins.",
    "label_rate": "Share of labelled rows whose outcome is positive (weighted).",
    "rows": "Labelled rows (outcomes joined to this model's scores).",
}
REGRESSION = {
    "mae": "Mean absolute error of the model's first output against a numeric outcome (regression targets).",
    "rmse": "Root mean squared error of the model's first output against a numeric outcome.",
    "regression_rows": "Rows with a numeric outcome (not 0/1) joined to this model's scores.",
}


def quality(stats: BinaryStats) -> dict[str, float | None]:
    return {
        "auc": stats.auc(),
        "log_loss": stats.log_loss(),
        "brier": stats.brier(),
        "ece": stats.ece(),
        "label_rate": stats.label_rate(),
        "rows": float(stats.n),
    }


class MonitorCollector(Collector):
    """Reads every partition's file in the state dir, not only the partitions this instance owns: the instances of
    one group share the state dir (a partition's state moves with it), so each exports the whole picture and a
    dashboard takes the max over instances. A file is read again only when it changed."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._cache: dict[Path, tuple[tuple[int, int], Snapshot]] = {}

    def _snapshot(self, path: Path) -> Snapshot:
        try:
            wal = path.with_name(path.name + "-wal")
            stamp = (path.stat().st_mtime_ns, wal.stat().st_mtime_ns if wal.exists() else 0)
        except FileNotFoundError:
            return Snapshot({}, {}, 0, {})
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        snapshot = read_snapshot(path)
        self._cache[path] = (stamp, snapshot)
        return snapshot

    def collect(self) -> Iterable[Any]:
        gauges = {
            name: GaugeMetricFamily(f"sibyl_quality_{name}", doc, labels=LABELS)
            for name, doc in (QUALITY | REGRESSION).items()
        }
        outcomes = CounterMetricFamily("sibyl_monitor_outcomes", OUTCOMES_DOC, labels=["result"])
        state_bytes = GaugeMetricFamily("sibyl_monitor_state_bytes", "Bytes the join state uses, all partitions.")
        bad = CounterMetricFamily("sibyl_monitor_bad_records", "Records or outcomes that could not be read.")
        now_hour = time.time_ns() // HOUR_NS
        counts = dict.fromkeys(RESULTS, 0)
        bad_total, used = 0, 0
        merged: dict[str, dict[tuple[str, str, str], BinaryStats]] = {window: {} for window in WINDOWS}
        numeric: dict[str, dict[tuple[str, str, str], RegressionStats]] = {window: {} for window in WINDOWS}
        for path in sorted(self.state_dir.glob("partition-*.db")):
            snapshot = self._snapshot(path)
            for window, hours in WINDOWS.items():
                first = now_hour - hours + 1
                _merge_into(merged[window], snapshot.stats, first)
                _merge_into(numeric[window], snapshot.regression, first)
            for result in RESULTS:
                counts[result] += snapshot.counters.get(result, 0)
            bad_total += snapshot.counters.get("bad_records", 0)
            used += snapshot.used_bytes
        for window, per_key in merged.items():
            for (predictor, model_text, slice_), stats in sorted(per_key.items()):
                model, version, role = model_parts(model_text)
                for name, value in quality(stats).items():
                    if value is not None:
                        gauges[name].add_metric([predictor, model, version, role, slice_, window], value)
        for window, per_regression in numeric.items():
            for (predictor, model_text, slice_), r in sorted(per_regression.items()):
                model, version, role = model_parts(model_text)
                values = {"mae": r.mae(), "rmse": r.rmse(), "regression_rows": float(r.n)}
                for name, value in values.items():
                    if value is not None:
                        gauges[name].add_metric([predictor, model, version, role, slice_, window], value)
        for result, value in counts.items():
            outcomes.add_metric([result], value)
        state_bytes.add_metric([], used)
        bad.add_metric([], bad_total)
        yield from gauges.values()
        yield outcomes
        yield state_bytes
        yield bad

    def describe(self) -> Iterable[Any]:
        return []


OUTCOMES_DOC = (
    "Outcomes by what became of them: joined, duplicate, early (waiting for its prediction), unknown (its "
    "prediction never came within the window), late (observed before the window); and rows evicted."
)


Stats = TypeVar("Stats", BinaryStats, RegressionStats)


def _merge_into(per_key: dict[tuple[str, str, str], Stats], hourly: dict[tuple[str, str, str, int], Stats],
                first: int) -> None:  # fmt: skip
    """Merge the hours from `first` on into per_key, per (predictor, model text, slice)."""
    for (predictor, model, slice_, hour), s in hourly.items():
        if hour >= first:
            key = (predictor, model, slice_)
            per_key[key] = per_key[key].merge(s) if key in per_key else s


@dataclass(frozen=True)
class Snapshot:
    stats: dict[tuple[str, str, str, int], BinaryStats]  # (predictor, model text, slice, hour)
    counters: dict[str, int]
    used_bytes: int
    regression: dict[tuple[str, str, str, int], RegressionStats]


def read_snapshot(path: Path) -> Snapshot:
    """One partition file's aggregates and counters, read-only (the owner may be writing: WAL)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = dict(db.execute("SELECT id, text FROM names").fetchall())
        stats = {
            (names[p], names[m], slice_, hour): BinaryStats.from_bytes(blob)
            for p, m, slice_, hour, blob in db.execute("SELECT predictor, model, slice, hour, stats FROM aggregates")
        }
        regression = {
            (names[p], names[m], slice_, hour): RegressionStats.from_bytes(blob)
            for p, m, slice_, hour, blob in db.execute("SELECT predictor, model, slice, hour, stats FROM regression")
        }
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        used = int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0])
    except sqlite3.OperationalError:  # created but not yet initialised by its owner
        return Snapshot({}, {}, 0, {})
    finally:
        db.close()
    return Snapshot(stats, counters, used, regression)


def metric_families() -> dict[str, set[str]]:
    """Every series name the monitor exports -> its labels (for the rules' and dashboard's checks)."""
    out = {f"sibyl_quality_{name}": set(LABELS) for name in QUALITY | REGRESSION}
    out |= {"sibyl_monitor_outcomes_total": {"result"}, "sibyl_monitor_state_bytes": set()}
    out["sibyl_monitor_bad_records_total"] = set()
    return out
