"""The two streams the monitor joins, read into plain arrays: prediction log records (a file log line or a Kafka
value) and outcomes (a line of the outcomes file or a Kafka value).

File lines are parsed with orjson, not json_format (a general walk over the message, several times dearer per
record); Kafka values are the binary protos, parsed by upb. Either way a record becomes a `Logged`: its ids, its
scores' first column as float32, and what slices read (features as the model saw them, entity ids, defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from sibyl.predlog.read import Record, record_from_json, record_from_proto
from sibyl.serving.decode import CodedIds
from sibyl.v1.outcome_pb2 import Outcome


@dataclass
class Logged:
    """One prediction log record: one model's scores of one call's rows."""

    prediction_id: str
    predictor: str
    model: str
    version: str
    role: str  # "primary", "shadow", "experiment", "extra", "override"
    sent_at_ns: int
    num_rows: int
    scores: np.ndarray  # float32 [num_rows]: the first output column
    feature_names: list[str] = field(default_factory=list)
    features: np.ndarray | None = None  # float32 [num_rows, len(feature_names)]
    context: dict[str, str] = field(default_factory=dict)
    row_entities: dict[str, list[str]] = field(default_factory=dict)
    defaulted: dict[str, np.ndarray] = field(default_factory=dict)

    # serving.slices.SliceRows, so the predictor's slices label the rows as the server did
    def column(self, feature: str) -> np.ndarray | None:
        if self.features is None or feature not in self.feature_names:
            return None
        return self.features[:, self.feature_names.index(feature)]

    def entity_ids(self, entity: str) -> str | CodedIds | None:
        ids = self.row_entities.get(entity)
        shared = self.context.get(entity)
        if ids is None:
            return shared
        coded = CodedIds.of(ids)
        return CodedIds([i or shared for i in coded.values], coded.codes) if shared else coded


class OutcomeRow(NamedTuple):  # a tuple: built once per outcome, millions of them
    prediction_id: str
    row: int
    value: float
    observed_at_ns: int
    weight: float


def logged(record: Record) -> Logged:
    """What the monitor keeps of a log record: the first output column of its scores, defaults as row arrays."""
    return Logged(
        prediction_id=record.prediction_id,
        predictor=record.predictor,
        model=record.model,
        version=record.version,
        role=record.role,
        sent_at_ns=record.sent_at_ns,
        num_rows=record.num_rows,
        scores=record.scores[:, 0],
        feature_names=record.feature_names,
        features=record.features,
        context=record.context,
        row_entities=record.row_entities,
        defaulted={feature: np.asarray(rows, np.intp) for feature, rows in record.defaulted.items()},
    )


def logged_from_json(line: bytes | str) -> Logged:
    """A file log line (proto3 JSON of PredictionLog, as predlog.jsonl writes it)."""
    return logged(record_from_json(line))


def logged_from_proto(data: bytes) -> Logged:
    """A Kafka value: the binary PredictionLog."""
    return logged(record_from_proto(data))


def outcome_from_json(line: bytes | str) -> OutcomeRow:
    """A line of the outcomes file (proto3 JSON of sibyl.v1.Outcome)."""
    d: dict[str, Any] = orjson.loads(line)
    weight = d.get("weight")
    return OutcomeRow(
        prediction_id=str(d.get("prediction_id", "")),
        row=int(d.get("row", 0)),
        value=float(d["value"]),
        observed_at_ns=int(d.get("observed_at_unix_nanos", 0)),
        weight=1.0 if weight is None else float(weight),
    )


def outcome_from_proto(data: bytes) -> OutcomeRow:
    """A Kafka value of the outcomes topic: the binary sibyl.v1.Outcome."""
    o = Outcome.FromString(data)
    return OutcomeRow(
        o.prediction_id, o.row, o.value, o.observed_at_unix_nanos, o.weight if o.HasField("weight") else 1.0
    )
