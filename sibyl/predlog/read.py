"""Prediction log records read back: a line of the file log (proto3 JSON of sibyl.v1.PredictionLog, as jsonl
writes it) or a Kafka value (the binary message), as one `Record`. The archive (batch.archive) and the outcome
monitor (monitor.records) read the log through here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from sibyl.v1.predict_pb2 import Role
from sibyl.v1.predlog_pb2 import PredictionLog

ROLE_NAMES = {value: name.removeprefix("ROLE_").lower() for name, value in Role.items()}


@dataclass
class Record:
    """One prediction log record, as the archive keeps it."""

    prediction_id: str
    request_id: str
    predictor: str
    model: str
    version: str
    role: str
    arm: str
    sent_at_ns: int
    scores: np.ndarray  # float32 [rows, score_dim]
    feature_names: list[str] = field(default_factory=list)
    features: np.ndarray | None = None  # float32 [rows, len(feature_names)]
    defaulted: dict[str, list[int]] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)
    row_entities: dict[str, list[str]] = field(default_factory=dict)
    trimmed: bool = False

    @property
    def num_rows(self) -> int:
        return int(self.scores.shape[0])

    def entity_ids(self, entity: str) -> list[str | None]:
        """Per row: its own id, else the call's shared one, else None (as the server's slices read them)."""
        shared = self.context.get(entity) or None
        ids = self.row_entities.get(entity)
        if ids is None or len(ids) != self.num_rows:
            return [shared] * self.num_rows
        return [i or shared for i in ids]


def floats(values: list[Any]) -> np.ndarray:
    try:
        return np.asarray(values, np.float32)
    except ValueError:  # proto3 JSON writes NaN and the infinities as strings; float() reads them
        return np.asarray([float(v) for v in values], np.float32)


def _shaped(rows: int, dim: int, flat: np.ndarray) -> np.ndarray:
    return flat.reshape(rows, dim) if flat.size == rows * dim else np.full((rows, dim), np.nan, np.float32)


def record_from_json(line: bytes | str) -> Record:
    """A file log line (predlog/jsonl.py's proto3 JSON); ValueError, KeyError or TypeError when it is not one."""
    d: dict[str, Any] = orjson.loads(line)
    rows, dim = int(d.get("num_rows", 0)), int(d.get("score_dim", 1)) or 1
    names = [str(n) for n in d.get("feature_names", [])]
    values = floats(d.get("feature_values", []))
    return Record(
        prediction_id=str(d.get("prediction_id", "")),
        request_id=str(d.get("request_id", "")),
        predictor=str(d.get("predictor", "")),
        model=str(d.get("model", "")),
        version=str(d.get("version", "")),
        role=str(d.get("role", "ROLE_UNSPECIFIED")).removeprefix("ROLE_").lower(),
        arm=str(d.get("arm", "")),
        sent_at_ns=int(d.get("sent_at_unix_nanos", 0)),
        scores=_shaped(rows, dim, floats(d.get("scores", []))),
        feature_names=names,
        features=values.reshape(rows, len(names)) if names and values.size == rows * len(names) else None,
        defaulted={str(x["feature"]): [int(r) for r in x.get("rows", [])] for x in d.get("defaulted", [])},
        context={str(k): str(v) for k, v in d.get("context", {}).items()},
        row_entities={str(c["entity"]): [str(i) for i in c.get("ids", [])] for c in d.get("row_entities", [])},
        trimmed=bool(d.get("trimmed", False)),
    )


def record_from_proto(data: bytes) -> Record:
    """A Kafka value of the prediction log topic: the binary PredictionLog."""
    r = PredictionLog.FromString(data)
    rows, dim = r.num_rows, r.score_dim or 1
    names = list(r.feature_names)
    values = np.asarray(r.feature_values, np.float32)
    return Record(
        prediction_id=r.prediction_id,
        request_id=r.request_id,
        predictor=r.predictor,
        model=r.model,
        version=r.version,
        role=ROLE_NAMES.get(r.role, "unspecified"),
        arm=r.arm,
        sent_at_ns=r.sent_at_unix_nanos,
        scores=_shaped(rows, dim, np.asarray(r.scores, np.float32)),
        feature_names=names,
        features=values.reshape(rows, len(names)) if names and values.size == rows * len(names) else None,
        defaulted={d.feature: list(d.rows) for d in r.defaulted},
        context=dict(r.context),
        row_entities={c.entity: list(c.ids) for c in r.row_entities},
        trimmed=r.trimmed,
    )
