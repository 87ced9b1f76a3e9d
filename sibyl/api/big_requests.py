"""A Predict request's bytes -> its header and RowBatch: what a decode process runs for a big request.

The same parse (api.wire) and decode (serving.decode) as the inline path, so the answer and the log record are
the same byte for byte (tests/api/test_big_requests.py). The header is the request without its rows (the rows
are the RowBatch now): what follows the decode reads only the header's fields, and the header crosses back
between processes in a few bytes instead of the whole message.
"""

from __future__ import annotations

import time

from sibyl.api import wire
from sibyl.serving.decode import RowBatch, decode
from sibyl.serving.limits import Limits
from sibyl.v1.predict_pb2 import PredictRequest


def parse_and_decode(data: bytes, max_fields: int, limits: Limits) -> tuple[bytes, RowBatch, float]:
    """(the header's bytes, the rows, seconds spent); raises InvalidArgument like the inline path."""
    start = time.perf_counter()
    request = wire.parse(PredictRequest, data, max_fields)
    batch = decode(request, limits)
    request.ClearField("rows")
    request.ClearField("dense")
    request.ClearField("row_entities")
    return request.SerializeToString(), batch, time.perf_counter() - start


def header(data: bytes) -> PredictRequest:
    return PredictRequest.FromString(data)
