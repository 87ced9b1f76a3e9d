"""PredictionLog <-> one compact JSON line (proto field names), shared by the file sink and `predlog tail`.

`to_json_line` builds the dict from the fields directly and encodes it with orjson: json_format walks every
float of a record in Python with the GIL held, and so does the stdlib encoder (each float printed as the
17-digit double a float32 widens to). The float fields go to orjson as float32 numpy arrays (upb hands them
over in C), which it prints as the shortest text that reads back as the same float32: a fraction of the CPU,
and shorter lines (docs/performance.md#file-log-encoding). The output is what json_format.Parse reads
back (proto3 JSON: field names as in the .proto, enums by name, int64 as a string, default values left out,
NaN and infinities as the strings "NaN", "Infinity", "-Infinity").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from google.protobuf import json_format

from sibyl.v1.predict_pb2 import Role
from sibyl.v1.predlog_pb2 import PredictionLog

_ROLE_NAMES = {value: name for name, value in Role.items()}
_STRINGS = ("prediction_id", "request_id", "predictor", "model", "version")
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_LINE = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def to_json_line(record: PredictionLog) -> str:
    return to_json_bytes(record).decode()


def to_json_bytes(record: PredictionLog, newline: bool = False) -> bytes:
    """One record as UTF-8 JSON; with `newline`, orjson ends it with a newline in the same buffer (the file sink
    writes its lines as they are, with no copy to add one)."""
    data: dict[str, Any] = {name: getattr(record, name) for name in _STRINGS if getattr(record, name)}
    if record.role:
        data["role"] = _ROLE_NAMES.get(record.role, record.role)
    if record.arm:
        data["arm"] = record.arm
    if record.sent_at_unix_nanos:
        data["sent_at_unix_nanos"] = str(record.sent_at_unix_nanos)
    if record.num_rows:
        data["num_rows"] = record.num_rows
    if record.feature_names:
        data["feature_names"] = list(record.feature_names)
    if record.feature_values:
        data["feature_values"] = _floats(record.feature_values)
    if record.defaulted:
        data["defaulted"] = [
            {"feature": d.feature, **({"rows": list(d.rows)} if d.rows else {})} for d in record.defaulted
        ]
    if record.score_dim:
        data["score_dim"] = record.score_dim
    if record.scores:
        data["scores"] = _floats(record.scores)
    if record.latency_ms:
        data["latency_ms"] = _double(record.latency_ms)
    if record.context:
        data["context"] = dict(record.context)
    if record.row_entities:
        data["row_entities"] = [{"entity": e.entity, "ids": list(e.ids)} for e in record.row_entities]
    if record.host:
        data["host"] = record.host
    if record.trimmed:
        data["trimmed"] = True
    return orjson.dumps(data, option=_LINE if newline else _OPTIONS)


def _floats(field: Any) -> np.ndarray | list[float | str]:
    """A repeated float field: a float32 array for orjson, or (rarely) a list with proto3's non-finite strings,
    since orjson writes NaN as null, which json_format.Parse refuses."""
    values = np.asarray(field, dtype=np.float32)
    if np.isfinite(values).all():
        return values
    return [_double(float(v)) for v in values]


def _double(value: float) -> float | str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def from_json_line(line: str | bytes) -> PredictionLog:
    """Raises json_format.ParseError (a ValueError) on a line that is not a PredictionLog."""
    return json_format.Parse(line, PredictionLog())
