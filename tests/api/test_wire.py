"""Pieced parsing (sibyl.api.wire): the same message as one whole parse, for any split, and refusals that say why."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sibyl.api.wire import parse
from sibyl.errors import InvalidArgument
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, FeatureRow, FloatVector, PredictRequest
from tests.api.hostile import delimited

MANY = 10**9
text = st.text(max_size=12)
floats = st.floats(width=32, allow_nan=False)
rows = st.builds(
    FeatureRow,
    features=st.dictionaries(text, floats, max_size=5),
    vectors=st.dictionaries(text, st.builds(FloatVector, values=st.lists(floats, max_size=40)), max_size=3),
    entities=st.dictionaries(text, text, max_size=2),
)
predict_requests = st.builds(
    PredictRequest,
    request_id=text,
    predictor=text,
    context=st.dictionaries(text, text, max_size=4),
    rows=st.lists(rows, max_size=8),
    row_entities=st.lists(st.builds(EntityColumn, entity=text, ids=st.lists(text, max_size=6)), max_size=3),
    extra_models=st.lists(text, max_size=4),
    model_override=text,
)
tensors = st.builds(
    v2.ModelInferRequest.InferInputTensor,
    name=text,
    datatype=st.sampled_from(["FP32", "INT64", "BYTES", "BOOL"]),
    shape=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
    contents=st.builds(
        v2.InferTensorContents,
        fp32_contents=st.lists(floats, max_size=30),
        int64_contents=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30),
        bool_contents=st.lists(st.booleans(), max_size=30),
        bytes_contents=st.lists(st.binary(max_size=8), max_size=10),
    ),
)
infer_requests = st.builds(
    v2.ModelInferRequest,
    model_name=text,
    model_version=text,
    id=text,
    parameters=st.dictionaries(text, st.builds(v2.InferParameter, string_param=text), max_size=3),
    inputs=st.lists(tensors, max_size=5),
    raw_input_contents=st.lists(st.binary(max_size=64), max_size=4),
)


def budget() -> settings:
    return settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@budget()
@given(predict_requests, st.integers(1, 64))
def test_predict_requests_parse_the_same_in_any_pieces(message: PredictRequest, piece: int) -> None:
    data = message.SerializeToString()
    assert parse(PredictRequest, data, MANY, piece) == PredictRequest.FromString(data)


@budget()
@given(infer_requests, st.integers(1, 64))
def test_infer_requests_parse_the_same_in_any_pieces(message: v2.ModelInferRequest, piece: int) -> None:
    data = message.SerializeToString()
    assert parse(v2.ModelInferRequest, data, MANY, piece) == v2.ModelInferRequest.FromString(data)


def key(number: int, wire: int) -> bytes:
    return bytes([number << 3 | wire])


def test_wire_quirks_parse_the_same() -> None:
    """Unpacked repeated numbers, a singular field given twice (merged), a map key given twice (last wins)."""
    unpacked = b"".join(key(1, 5) + struct.pack("<f", v) for v in range(300))
    row = delimited(2, delimited(1, b"v") + delimited(2, unpacked))
    row += delimited(1, delimited(1, b"a") + key(2, 5) + struct.pack("<f", 1))
    row += delimited(1, delimited(1, b"a") + key(2, 5) + struct.pack("<f", 2))
    data = delimited(4, row) + delimited(5, key(3, 0) + b"\x05") + delimited(5, delimited(1, b"x"))
    data += delimited(2, b"p") + delimited(2, b"q")
    whole = PredictRequest.FromString(data)
    assert len(whole.rows[0].vectors["v"].values) == 300 and whole.rows[0].features["a"] == 2.0
    assert whole.dense.num_rows == 5 and list(whole.dense.feature_names) == ["x"] and whole.predictor == "q"
    for piece in (1, 2, 7, 50, 1000):
        assert parse(PredictRequest, data, MANY, piece) == whole
    shape = b"".join(key(3, 0) + bytes([d]) for d in (2, 3))
    bools = b"".join(key(1, 0) + b"\x01" for _ in range(3))
    infer = delimited(5, delimited(1, b"x") + shape + delimited(5, bools))
    whole_infer = v2.ModelInferRequest.FromString(infer)
    assert list(whole_infer.inputs[0].shape) == [2, 3] and len(whole_infer.inputs[0].contents.bool_contents) == 3
    assert parse(v2.ModelInferRequest, infer, MANY, 3) == whole_infer


def test_a_message_with_more_fields_than_any_request_needs_is_refused_before_parsing() -> None:
    empty_rows = key(4, 2) + b"\x00"
    with pytest.raises(InvalidArgument, match="PredictRequest has more than 1000 fields"):
        parse(PredictRequest, empty_rows * 5000, 1000, 64)
    ids = delimited(1, b"e") + delimited(2, b"") * 5000
    with pytest.raises(InvalidArgument, match="EntityColumn has more than 1000 fields"):
        parse(PredictRequest, delimited(6, ids), 1000, 64)
    # A run of unpacked numbers counts once: a wide vector is fine.
    values = np.arange(5000, dtype="<f4")
    wide = PredictRequest(rows=[FeatureRow(vectors={"v": FloatVector(values=values)})]).SerializeToString()
    assert list(parse(PredictRequest, wide, 1000, 64).rows[0].vectors["v"].values) == values.tolist()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (key(4, 2) + b"\xff\xff\xff\x7f" + b"\0" * 100, "runs past the end"),
        (key(4, 2) + b"\x80" * 11 + b"\0" * 100, "varint"),
        (key(4, 3) + b"\0" * 100, "wire type 3"),
        (key(3, 5) + b"\0" * 100, "not a valid sibyl.v1.PredictRequest"),  # context declared as bytes, sent fixed32
        (key(5, 2) + b"\x64" + key(3, 0) + b"\xff" * 99, "not a valid"),
    ],
)
def test_malformed_bytes_are_invalid_argument(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(PredictRequest, data, MANY, 8)


def test_small_messages_are_parsed_whole() -> None:
    request = PredictRequest(predictor="p", dense=DenseRows(feature_names=["a"], values=b"\0" * 4, num_rows=1))
    assert parse(PredictRequest, request.SerializeToString(), 0) == request  # max_fields applies to pieces only
