"""Build PredictionLog records (one per model scored) from what the request path already has.

Called on the after-response records thread (serving/after_response.py), after the response, never on the event loop.
"""

from __future__ import annotations

import numpy as np

from sibyl.serving.decode import RowBatch
from sibyl.v1.predict_pb2 import DefaultedFeature, EntityColumn
from sibyl.v1.predlog_pb2 import PredictionLog

# Wire tags of PredictionLog's packed float fields (length-delimited: field << 3 | 2); see _packed.
_FEATURE_VALUES = bytes([11 << 3 | 2])
_SCORES = bytes([14 << 3 | 2])


def build_record(
    *,
    prediction_id: str,
    request_id: str,
    predictor: str,
    model: str,
    version: str,
    role: int,
    arm: str,
    sent_at_ns: int,
    batch: RowBatch,
    columns: list[str],
    matrix: np.ndarray | None,
    defaulted: dict[str, np.ndarray],
    scores: np.ndarray,
    latency_ms: float,
    host: str,
) -> PredictionLog:
    record = PredictionLog(
        prediction_id=prediction_id,
        request_id=request_id,
        predictor=predictor,
        model=model,
        version=version,
        role=role,  # type: ignore[arg-type]  # a Role value; the stub wants its NewType
        arm=arm,
        sent_at_unix_nanos=sent_at_ns,
        num_rows=batch.num_rows,
        score_dim=scores.shape[1],
        latency_ms=latency_ms,
        host=host,
    )
    record.context.update(batch.shared_entities)
    record.row_entities.extend(EntityColumn(entity=e, ids=ids) for e, ids in batch.row_entities.items())
    if matrix is not None:
        record.feature_names.extend(columns)
        _packed(record, _FEATURE_VALUES, matrix)
    record.defaulted.extend(DefaultedFeature(feature=f, rows=rows.tolist()) for f, rows in defaulted.items())
    _packed(record, _SCORES, scores)
    return record


def _packed(record: PredictionLog, tag: bytes, values: np.ndarray) -> None:
    """A float32 matrix into a packed repeated float field, as its wire bytes (tag, varint length, little-endian
    floats): upb parses them with a copy, where extend(values.tolist()) made a Python float per value and held the
    GIL for long on a large record (docs/performance.md#packed-records)."""
    if values.size:
        data = np.ascontiguousarray(values, dtype="<f4").tobytes()
        record.MergeFromString(tag + encode_varint(len(data)) + data)


def encode_varint(value: int) -> bytes:
    """A non-negative int as a protobuf base-128 varint: 7 bits per byte, low first, high bit = more to come (the
    length prefix of a length-delimited field; api.wire writes one too)."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
