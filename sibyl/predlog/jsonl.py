"""PredictionLog <-> one compact JSON line (proto field names), shared by the file sink and `predlog tail`."""

from __future__ import annotations

import json

from google.protobuf import json_format

from sibyl.v1.predlog_pb2 import PredictionLog


def to_json_line(record: PredictionLog) -> str:
    data = json_format.MessageToDict(record, preserving_proto_field_name=True)
    return json.dumps(data, separators=(",", ":"))


def from_json_line(line: str) -> PredictionLog:
    """Raises json_format.ParseError (a ValueError) on a line that is not a PredictionLog."""
    return json_format.Parse(line, PredictionLog())
