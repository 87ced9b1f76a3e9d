"""The prediction log and the outcomes as Parquet, in the layout `sibyl predlog archive` writes and the Spark quality
job (quality) reads; any engine reads it too (docs/monitoring.md#batch-archive-and-spark). Stable:

    DIR/predictions/predictor=<name>/date=<YYYY-MM-DD>/part-<source>-<start>.parquet
    DIR/outcomes/date=<YYYY-MM-DD>/part-<source>-<start>.parquet
    DIR/predictions/_archived.json, DIR/outcomes/_archived.json     how far each source was archived

`predictor` and `date` (UTC, of sent_at or observed_at) are Hive partitions: in the path, not in the files. One
prediction row per (prediction_id, row, model record): the primary's, each shadow's, each arm's. Columns in
PREDICTION_COLUMNS / OUTCOME_COLUMNS order, then per record `feature_<name>` (float, the model's input as scored,
null where that record did not carry it) and `entity_<name>` (the row's id, or the call's shared id). Files of one
partition may differ in their feature and entity columns (other models, other inputs): read with mergeSchema.

A part's name holds its source and the position it starts at (archive_sources): archiving the same records again
writes the same files, so a run cut short and run again replaces what it had written instead of adding to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sibyl.errors import MissingDependency
from sibyl.predlog.read import Record
from sibyl.v1.outcome_pb2 import Outcome

PREDICTIONS, OUTCOMES = "predictions", "outcomes"
PREDICTION_COLUMNS = (
    "prediction_id", "row", "model", "version", "role", "arm", "request_id", "sent_at", "score", "scores",
    "defaulted", "trimmed",
)  # fmt: skip
OUTCOME_COLUMNS = ("prediction_id", "row", "value", "weight", "observed_at")
FEATURE, ENTITY = "feature_", "entity_"


def pyarrow_modules() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or MissingDependency with the install hint."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency("pyarrow", "parquet", "archiving the prediction log as Parquet") from None
    return pa, pq


def outcome_from_json(line: bytes) -> Outcome:
    """A line of the outcomes file (outcome_sink's proto3 JSON)."""
    d: dict[str, Any] = orjson.loads(line)
    outcome = Outcome(
        prediction_id=str(d["prediction_id"]),
        row=int(d.get("row", 0)),
        value=float(d["value"]),
        observed_at_unix_nanos=int(d.get("observed_at_unix_nanos", 0)),
    )
    if d.get("weight") is not None:
        outcome.weight = float(d["weight"])
    return outcome


def outcome_from_proto(data: bytes) -> Outcome:
    return Outcome.FromString(data)


def utc_date(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns // 1_000_000_000, UTC).strftime("%Y-%m-%d")


def prediction_table(records: list[Record]) -> Any:
    """One pyarrow Table of these records' rows (PREDICTION_COLUMNS, then features and entities, sorted)."""
    pa, _ = pyarrow_modules()
    counts = np.array([r.num_rows for r in records], np.int64)
    total = int(counts.sum())

    def repeated(values: list[str]) -> Any:
        return pa.array(np.repeat(np.array(values, dtype=object), counts), pa.string())

    first = np.concatenate([r.scores[:, 0] for r in records]) if total else np.zeros(0, np.float32)
    scores: list[list[float] | None] = []
    defaulted: list[list[str]] = []
    for r in records:
        wide = r.scores.shape[1] > 1
        scores += r.scores.tolist() if wide else [None] * r.num_rows
        per_row: list[list[str]] = [[] for _ in range(r.num_rows)]
        for feature, rows in r.defaulted.items():
            for i in rows:
                if 0 <= i < r.num_rows:
                    per_row[i].append(feature)
        defaulted += per_row
    sent_us = np.repeat(np.array([r.sent_at_ns // 1000 for r in records], np.int64), counts)
    columns: dict[str, Any] = {
        "prediction_id": repeated([r.prediction_id for r in records]),
        "row": pa.array(
            np.concatenate([np.arange(r.num_rows, dtype=np.int32) for r in records]) if total else np.zeros(0, np.int32)
        ),
        "model": repeated([r.model for r in records]),
        "version": repeated([r.version for r in records]),
        "role": repeated([r.role for r in records]),
        "arm": repeated([r.arm for r in records]),
        "request_id": repeated([r.request_id for r in records]),
        "sent_at": pa.array(sent_us, pa.timestamp("us", tz="UTC")),
        "score": pa.array(first, pa.float32()),
        "scores": pa.array(scores, pa.list_(pa.float32())),
        "defaulted": pa.array(defaulted, pa.list_(pa.string())),
        "trimmed": pa.array(np.repeat(np.array([r.trimmed for r in records]), counts), pa.bool_()),
    }
    for name in sorted({n for r in records for n in r.feature_names}):
        values, present, at = np.zeros(total, np.float32), np.zeros(total, bool), 0
        for r in records:
            if r.features is not None and name in r.feature_names:
                values[at : at + r.num_rows] = r.features[:, r.feature_names.index(name)]
                present[at : at + r.num_rows] = True
            at += r.num_rows
        columns[FEATURE + name] = pa.array(values, pa.float32(), mask=~present)
    for entity in sorted({e for r in records for e in (*r.context, *r.row_entities)}):
        columns[ENTITY + entity] = pa.array([i for r in records for i in r.entity_ids(entity)], pa.string())
    return pa.table(columns)


def outcome_table(outcomes: list[Outcome]) -> Any:
    pa, _ = pyarrow_modules()
    return pa.table({
        "prediction_id": pa.array([o.prediction_id for o in outcomes], pa.string()),
        "row": pa.array([o.row for o in outcomes], pa.int32()),
        "value": pa.array([o.value for o in outcomes], pa.float64()),
        "weight": pa.array([o.weight if o.HasField("weight") else 1.0 for o in outcomes], pa.float64()),
        "observed_at": pa.array([o.observed_at_unix_nanos // 1000 for o in outcomes], pa.timestamp("us", tz="UTC")),
    })  # fmt: skip


@dataclass
class Written:
    """What one archive run wrote."""

    records: int = 0  # prediction log records or outcomes read
    rows: int = 0  # Parquet rows written
    files: int = 0
    bad: int = 0  # lines or values that were not a record (skipped)


def write_chunk(root: Path, stream: str, part: str, items: list[Any], written: Written) -> None:
    """One chunk of records (or outcomes) of one source position into its partitions, as `part-<part>.parquet`
    (written to a temporary name, then renamed: a reader never sees half a file)."""
    _, pq = pyarrow_modules()
    groups: dict[Path, list[Any]] = {}
    for item in items:
        if stream == PREDICTIONS:
            folder = root / PREDICTIONS / f"predictor={item.predictor}" / f"date={utc_date(item.sent_at_ns)}"
        else:
            folder = root / OUTCOMES / f"date={utc_date(item.observed_at_unix_nanos)}"
        groups.setdefault(folder, []).append(item)
    for folder, group in groups.items():
        table = prediction_table(group) if stream == PREDICTIONS else outcome_table(group)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"part-{part}.parquet"
        temporary = folder / f".part-{part}.parquet.tmp"
        pq.write_table(table, temporary, compression="zstd")
        temporary.replace(target)
        written.rows += table.num_rows
        written.files += 1
    written.records += len(items)
