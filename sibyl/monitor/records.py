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

from sibyl.serving.decode import CodedIds
from sibyl.v1.outcome_pb2 import Outcome
from sibyl.v1.predict_pb2 import Role
from sibyl.v1.predlog_pb2 import PredictionLog

ROLE_BY_NAME = {name: value for name, value in Role.items()}
ROLE_NAMES = {value: name.removeprefix("ROLE_").lower() for name, value in Role.items()}


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


def logged_from_json(line: bytes | str) -> Logged:
    """A file log line (proto3 JSON of PredictionLog, as predlog.jsonl writes it)."""
    d: dict[str, Any] = orjson.loads(line)
    n = int(d.get("num_rows", 0))
    dim = int(d.get("score_dim", 1)) or 1
    scores = _floats(d.get("scores", []))
    names = list(d.get("feature_names", []))
    values = _floats(d.get("feature_values", []))
    return Logged(
        prediction_id=d.get("prediction_id", ""),
        predictor=d.get("predictor", ""),
        model=d.get("model", ""),
        version=d.get("version", ""),
        role=_role(d.get("role", "")),
        sent_at_ns=int(d.get("sent_at_unix_nanos", 0)),
        num_rows=n,
        scores=scores.reshape(n, dim)[:, 0] if scores.size == n * dim else np.full(n, np.nan, np.float32),
        feature_names=names,
        features=values.reshape(n, len(names)) if names and values.size == n * len(names) else None,
        context=dict(d.get("context", {})),
        row_entities={c["entity"]: list(c.get("ids", [])) for c in d.get("row_entities", [])},
        defaulted={x["feature"]: np.asarray(x.get("rows", []), np.intp) for x in d.get("defaulted", [])},
    )


def logged_from_proto(data: bytes) -> Logged:
    """A Kafka value: the binary PredictionLog."""
    r = PredictionLog.FromString(data)
    n, dim = r.num_rows, r.score_dim or 1
    scores = np.asarray(r.scores, np.float32)
    names = list(r.feature_names)
    values = np.asarray(r.feature_values, np.float32)
    return Logged(
        prediction_id=r.prediction_id,
        predictor=r.predictor,
        model=r.model,
        version=r.version,
        role=ROLE_NAMES.get(r.role, "unspecified"),
        sent_at_ns=r.sent_at_unix_nanos,
        num_rows=n,
        scores=scores.reshape(n, dim)[:, 0] if scores.size == n * dim else np.full(n, np.nan, np.float32),
        feature_names=names,
        features=values.reshape(n, len(names)) if names and values.size == n * len(names) else None,
        context=dict(r.context),
        row_entities={c.entity: list(c.ids) for c in r.row_entities},
        defaulted={d.feature: np.asarray(d.rows, np.intp) for d in r.defaulted},
    )


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


def _floats(values: list[Any]) -> np.ndarray:
    """proto3 JSON floats: numbers, or the strings "NaN" / "Infinity" / "-Infinity"."""
    try:
        return np.asarray(values, np.float32)
    except ValueError:
        return np.asarray([float(v) for v in values], np.float32)  # float("NaN"), float("Infinity") parse


def _role(text: str) -> str:
    return text.removeprefix("ROLE_").lower() if text else "unspecified"
