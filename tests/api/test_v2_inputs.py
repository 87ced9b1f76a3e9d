"""V2 input tensors -> rows (sibyl.api.v2.tensors, from a ModelInferRequest read by sibyl.api.v2.messages): every
datatype both ways, the work budget checked before anything a tensor declares is built (the issue-13 shapes
among them), and the same refusals, word for word, for the same call as a REST body (sibyl.api.rest.codec)."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from sibyl.api.rest import codec
from sibyl.api.v2 import tensors
from sibyl.api.v2.messages import TYPED_FIELDS, infer_call
from sibyl.api.v2.tensors import NUMPY_TYPES, InferCall
from sibyl.errors import InvalidArgument
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.serving.decode import RowBatch, decode
from sibyl.serving.limits import Limits
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest

Tensor = v2.ModelInferRequest.InferInputTensor
LIMITS = Limits(max_rows=100, max_columns=8, max_elements=200, max_name_length=32)


def to_rows(
    request: v2.ModelInferRequest,
    model_override: str = "",
    matrix_inputs: dict[str, list[str]] | None = None,
    limits: Limits = LIMITS,
) -> tuple[PredictRequest, RowBatch]:
    """The servers' route: the message read as a call (api.v2.messages), then its rows (api.v2.tensors)."""
    return tensors.to_rows(infer_call(request, limits), model_override, matrix_inputs, limits)


def to_predict_request(
    request: v2.ModelInferRequest,
    model_override: str = "",
    matrix_inputs: dict[str, list[str]] | None = None,
    limits: Limits = LIMITS,
) -> PredictRequest:
    """The same call as one PredictRequest (dense rows): what a V2 call means in sibyl's own API."""
    call = infer_call(request, limits)
    names, matrix, entities = tensors.to_columns(call, matrix_inputs or {}, limits)
    return PredictRequest(
        request_id=call.id,
        predictor=call.model,
        context=tensors.context(call.parameters),
        dense=DenseRows(feature_names=names, values=matrix.tobytes(), num_rows=matrix.shape[0]),
        row_entities=[EntityColumn(entity=e, ids=ids) for e, ids in entities.items()],
        model_override=model_override,
    )


def infer(*inputs: Tensor, raw: list[bytes] | None = None, **kw: Any) -> v2.ModelInferRequest:
    return v2.ModelInferRequest(model_name="p", inputs=list(inputs), raw_input_contents=raw or [], **kw)


def typed(name: str, datatype: str, shape: list[int], values: list[Any]) -> Tensor:
    contents = v2.InferTensorContents(**{TYPED_FIELDS[datatype]: values})
    return Tensor(name=name, datatype=datatype, shape=shape, contents=contents)


def matrix(request: v2.ModelInferRequest, **kw: Any) -> tuple[list[str], np.ndarray]:
    """The rows by both routes: to_rows (the servers') and decode(to_predict_request) agree."""
    batch = decode(to_predict_request(request, limits=LIMITS, **kw), LIMITS)
    _, direct = to_rows(request, limits=LIMITS, **kw)
    assert direct.names == batch.names and direct.row_entities == batch.row_entities
    np.testing.assert_array_equal(direct.values, batch.values)
    return batch.names, batch.values


@pytest.mark.parametrize("datatype", sorted(NUMPY_TYPES))
def test_every_numeric_datatype_raw_and_typed(datatype: str) -> None:
    values = np.array([[0, 1], [1, 0], [1, 1]], dtype=NUMPY_TYPES[datatype])
    raw = infer(Tensor(name="v", datatype=datatype, shape=[3, 2]), raw=[values.tobytes()])
    names, got = matrix(raw)
    assert names == ["v[0]", "v[1]"] and got.tolist() == values.astype(np.float32).tolist()
    if datatype in TYPED_FIELDS:
        names, got = matrix(infer(typed("v", datatype, [3, 2], values.ravel().tolist())))
        assert got.tolist() == values.astype(np.float32).tolist()


def test_entity_ids_raw_and_typed_and_the_model_input() -> None:
    ids = [b"c1", b"", b"\xc3\xa9"]
    payload = b"".join(struct.pack("<I", len(i)) + i for i in ids)
    request = infer(
        Tensor(name="input", datatype="FP32", shape=[3, 2]),
        Tensor(name="consumer_id", datatype="BYTES", shape=[3, 1]),
        raw=[np.arange(6, dtype="<f4").tobytes(), payload],
        parameters={"store_id": v2.InferParameter(string_param="s1"), "priority": v2.InferParameter(int64_param=1)},
    )
    predict = to_predict_request(request, "m@1", {"input": ["a", "b"]}, LIMITS)
    assert list(predict.dense.feature_names) == ["a", "b"] and predict.model_override == "m@1"
    assert list(predict.row_entities[0].ids) == ["c1", "", "é"] and dict(predict.context) == {"store_id": "s1"}
    typed_ids = infer(typed("consumer_id", "BYTES", [3], ids))
    assert list(to_predict_request(typed_ids, limits=LIMITS).row_entities[0].ids) == ["c1", "", "é"]


BIG = 2**32
CASES = {
    # issue 13: int64 overflow (np.prod -> 0), a zero dimension, a ValueError from reshape -> INTERNAL
    "huge shape, no contents": (infer(Tensor(name="x", datatype="FP32", shape=[BIG, BIG])), "4294967296 rows"),
    "zero rows, a million columns": (
        infer(Tensor(name="x", datatype="FP32", shape=[0, 10**6])),
        r"shape \[0, 1000000\] has no rows",
    ),
    "int64-overflowing product": (infer(Tensor(name="x", datatype="FP32", shape=[2**62, 4])), "rows"),
    "wide, within rows": (infer(Tensor(name="x", datatype="FP32", shape=[1, 10**9])), "1000000000 columns"),
    "columns summed": (
        infer(*[typed(f"x{i}", "FP32", [1, 3], [0.0] * 3) for i in range(3)]),
        "9 feature columns",
    ),
    "elements": (infer(Tensor(name="x", datatype="FP32", shape=[50, 5])), "50 rows x 5 columns = 250"),
    "many tensors": (infer(*[typed(f"x{i}", "FP32", [1], [0.0]) for i in range(9)]), "9 input tensors"),
    "duplicate names": (infer(*[typed("x", "FP32", [1], [0.0])] * 2), "'x' is given twice"),
    "negative": (infer(Tensor(name="x", datatype="FP32", shape=[-1, 2])), "N, k >= 1"),
    "three dims": (infer(Tensor(name="x", datatype="FP32", shape=[1, 1, 1])), r"\[N\] or \[N, k\]"),
    "many dims": (infer(Tensor(name="x", datatype="FP32", shape=[1] * 100)), "100 dims"),
    "no columns": (infer(Tensor(name="x", datatype="FP32", shape=[2, 0])), "no columns"),
    "rows disagree": (infer(typed("a", "FP32", [1], [1]), typed("b", "FP32", [2], [1, 2])), "2 rows, earlier"),
    "typed count": (infer(typed("x", "FP32", [2, 2], [1.0] * 3)), "3 values in contents.fp32_contents"),
    "wrong typed field": (
        infer(Tensor(name="x", datatype="FP32", shape=[1], contents=v2.InferTensorContents(int_contents=[1]))),
        "contents.int_contents is set for a FP32 tensor",
    ),
    "raw and typed": (infer(typed("x", "FP32", [1], [1.0]), raw=[b"\0" * 4]), "both contents and raw"),
    "raw short": (infer(Tensor(name="x", datatype="FP32", shape=[2]), raw=[b"\0" * 7]), "7 bytes"),
    "raw long": (infer(Tensor(name="x", datatype="INT64", shape=[1]), raw=[b"\0" * 9]), "needs 8"),
    "extra raw": (infer(Tensor(name="x", datatype="FP32", shape=[1]), raw=[b"\0" * 4, b""]), "2 raw_input"),
    "fp16 typed": (infer(Tensor(name="x", datatype="FP16", shape=[1])), "no typed contents field"),
    "unknown datatype": (infer(Tensor(name="x", datatype="BF16", shape=[1])), "not supported"),
    "uint8 out of range": (infer(typed("x", "UINT8", [2], [1, 300])), "value 300 is out of range for UINT8"),
    "int8 out of range": (infer(typed("x", "INT8", [1], [-200])), "-200 is out of range"),
    "fp64 too large": (infer(typed("x", "FP64", [1], [1e300])), "too large for float32"),
    "bytes prefixes short": (
        infer(Tensor(name="e", datatype="BYTES", shape=[3]), raw=[b"\0" * 11]),
        "3 elements need at least 12",
    ),
    "bytes element past the end": (
        infer(Tensor(name="e", datatype="BYTES", shape=[1]), raw=[struct.pack("<I", 2**32 - 1) + b"ab"]),
        "element 0 of 4294967295 bytes runs past the end",
    ),
    "bytes left over": (
        infer(Tensor(name="e", datatype="BYTES", shape=[1]), raw=[b"\0" * 4 + b"\0" * 5]),
        "5 bytes of raw contents after the 1 elements",
    ),
    "bytes typed count": (infer(typed("e", "BYTES", [2], [b"a"])), "1 values in contents.bytes_contents"),
    "bytes not text": (infer(typed("e", "BYTES", [1], [b"\xff"])), "not UTF-8"),
    "bytes wide": (infer(Tensor(name="e", datatype="BYTES", shape=[1, 2])), "one id per row"),
    "long entity id": (infer(typed("e", "BYTES", [1], [b"x" * 33])), "an id is longer than 32"),
    "long name": (infer(typed("x" * 33, "FP32", [1], [1])), "input name must be 1-32"),
    "parameters": (
        infer(typed("x", "FP32", [1], [1]), parameters={f"p{i}": v2.InferParameter() for i in range(9)}),
        "9 request parameters",
    ),
    "fine": (infer(Tensor(name="input", datatype="FP32", shape=[1, 3]), raw=[b"\0" * 12]), None),  # the baseline
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_budget_and_contents_refusals_say_what_to_fix(case: str) -> None:
    request, message = CASES[case]
    routes = (  # the servers' route, and the PredictRequest it means decoded as sibyl's own API would
        lambda: to_rows(request, limits=LIMITS),
        lambda: decode(to_predict_request(request, limits=LIMITS), LIMITS),
    )
    for route in routes:
        if message is None:
            route()
            continue
        with pytest.raises(InvalidArgument, match=message):
            route()


def test_the_model_input_must_have_the_model_width() -> None:
    request = infer(Tensor(name="input", datatype="FP32", shape=[1, 3]), raw=[b"\0" * 12])
    with pytest.raises(InvalidArgument, match="3 columns, the model takes 2"):
        to_predict_request(request, matrix_inputs={"input": ["a", "b"]}, limits=LIMITS)


def rest_body(request: v2.ModelInferRequest) -> tuple[bytes, str | None]:
    """The same call as a REST body: raw contents as the binary-data extension's bytes, typed contents as JSON
    data; (body, Inference-Header-Content-Length or None)."""
    inputs, binary = [], b""
    for i, tensor in enumerate(request.inputs):
        spec: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if request.raw_input_contents:
            spec["parameters"] = {"binary_data_size": len(request.raw_input_contents[i])}
            binary += request.raw_input_contents[i]
        else:
            field = TYPED_FIELDS.get(tensor.datatype)
            values = list(getattr(tensor.contents, field)) if field else []
            spec["data"] = [v.decode() if isinstance(v, bytes) else v for v in values]
        inputs.append(spec)
    parameters = {key: value.string_param for key, value in request.parameters.items()}
    head = json.dumps({"inputs": inputs, "parameters": parameters}).encode()
    return head + binary, str(len(head)) if binary else None


# Cases a REST body can say the same way (not typed-contents specifics, not bytes JSON cannot carry).
SAME_OVER_REST = sorted(
    set(CASES)
    - {"typed count", "wrong typed field", "raw and typed", "extra raw", "fp16 typed", "bytes typed count"}
    - {"uint8 out of range", "int8 out of range", "fp64 too large", "bytes not text"}
)


@pytest.mark.parametrize("case", SAME_OVER_REST)
def test_rest_refuses_what_grpc_refuses_with_the_same_message(case: str) -> None:
    request, message = CASES[case]
    body, header_length = rest_body(request)

    def over(read: Callable[[], InferCall]) -> str | None:
        try:
            tensors.to_rows(read(), limits=LIMITS)
        except InvalidArgument as exc:
            return str(exc)
        return None

    grpc_says = over(lambda: infer_call(request, LIMITS))
    rest_says = over(lambda: codec.parse_infer(body, header_length, "p", ""))
    assert rest_says == grpc_says
    assert message is None or re.search(message, rest_says or "")
