"""Hostile requests for the fuzzer (test_fuzz_hostile.py): hypothesis strategies that reach the hard cases of
Predict and ModelInfer, as serialized bytes, plus wire-level messages the protobuf API would not build.

Large parts (thousands of names, long vectors, many rows) are built from a few drawn numbers, so generating an
example stays cheap and shrinking stays meaningful. The limits are the server defaults the fuzz server runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import struct

import numpy as np
from hypothesis import strategies as st

from sibyl.api.v2.messages import TYPED_FIELDS
from sibyl.api.v2.tensors import NUMPY_TYPES
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.serving.limits import Limits
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, FeatureRow, FloatVector, PredictRequest

LIMITS = Limits()
ROWS, COLUMNS = LIMITS.max_rows, LIMITS.max_columns
FEATURES = ["amount", "age", "rating", "emb", "emb[0]", "emb[1]"]
ENTITIES = ["consumer_id", "store_id"]
Tensor = v2.ModelInferRequest.InferInputTensor

names = st.one_of(st.sampled_from(FEATURES), st.text(max_size=12))
# Counts at and around every limit, zero, negative (where the field allows it) and overflowing int64 products.
row_counts = st.one_of(st.integers(0, 40), st.sampled_from([ROWS, ROWS + 1]))
name_counts = st.one_of(st.integers(0, 8), st.sampled_from([COLUMNS, COLUMNS + 1, 6_000]))
widths = st.one_of(st.integers(0, 6), st.sampled_from([COLUMNS, COLUMNS + 1, 50_000]))
dims = st.one_of(
    st.integers(0, 12),
    st.sampled_from([-1, ROWS, ROWS + 1, COLUMNS + 1, 10**6, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63)]),
)


# ---- wire bytes
def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


@st.composite
def wire_v1(draw: st.DrawFn) -> bytes:
    """PredictRequest bytes no API call makes: many empty rows, one key repeated in a row, unpacked vectors."""
    head = PredictRequest(predictor="p").SerializeToString()
    count = draw(st.sampled_from([1, 100, ROWS + 1, 60_000]))
    kind = draw(st.sampled_from(["empty rows", "repeated key", "unpacked vector", "empty names", "truncated"]))
    if kind == "empty rows":
        return head + delimited(4, b"") * count
    if kind == "repeated key":
        entry = delimited(1, b"amount") + b"\x15" + struct.pack("<f", 1.0)
        return head + delimited(4, delimited(1, entry) * count)
    if kind == "unpacked vector":
        values = b"".join(b"\x0d" + struct.pack("<f", 0.5) for _ in range(min(count, 3 * COLUMNS)))
        return head + delimited(4, delimited(2, delimited(1, b"emb") + delimited(2, values)))
    if kind == "empty names":
        return head + delimited(5, delimited(1, b"") * count + b"\x18\x01")
    return head + delimited(4, b"") * count + b"\x22\xff\xff"  # a row whose length runs past the end


@st.composite
def wire_v2(draw: st.DrawFn) -> bytes:
    head = v2.ModelInferRequest(model_name="p").SerializeToString()
    count = draw(st.sampled_from([1, 100, COLUMNS + 1, 60_000]))
    kind = draw(st.sampled_from(["empty inputs", "empty raw", "empty ids", "unpacked bools", "unpacked shape"]))
    if kind == "empty inputs":
        return head + delimited(5, b"") * count
    if kind == "empty raw":
        amount = delimited(1, b"amount") + delimited(2, b"FP32") + b"\x18\x01"
        return head + delimited(5, amount) + delimited(7, b"") * count
    tensor = delimited(1, b"consumer_id" if kind == "empty ids" else b"amount")
    if kind == "empty ids":
        tensor += delimited(2, b"BYTES") + b"\x18" + varint(count) + delimited(5, delimited(8, b"") * count)
    elif kind == "unpacked bools":
        tensor += delimited(2, b"BOOL") + b"\x18" + varint(count) + delimited(5, b"\x08\x01" * count)
    else:
        tensor += delimited(2, b"FP32") + b"\x18\x01" * count
    return head + delimited(5, tensor)


# ---- PredictRequest
@st.composite
def dense_request(draw: st.DrawFn) -> PredictRequest:
    n = draw(st.one_of(row_counts, st.sampled_from([2**31, 2**32 - 1])))
    base = draw(st.lists(names, min_size=1, max_size=6))
    count = draw(name_counts)
    columns = [base[i] if i < len(base) else f"{base[i % len(base)]}~{i}" for i in range(count)]
    if columns and draw(st.booleans()):  # a duplicate, anywhere
        columns.insert(draw(st.integers(0, len(columns))), columns[draw(st.integers(0, len(columns) - 1))])
    cells = n * len(columns)
    mode = draw(st.sampled_from(["exact", "exact", "short", "long", "empty"]))
    size = {"exact": 4 * cells, "short": max(0, 4 * cells - 4), "long": 4 * cells + 3, "empty": 0}[mode]
    if size > 8 * 2**20:
        size = draw(st.integers(0, 64))
    fill = draw(st.sampled_from([0.5, 0.0, float("nan"), float("inf")]))
    values = np.full(size // 4, fill, "<f4").tobytes() + b"\0" * (size % 4)
    request = PredictRequest(
        predictor=draw(st.sampled_from(["p", "p", "nope", ""])),
        dense=DenseRows(feature_names=columns, values=values, num_rows=n),
    )
    for entity in draw(st.lists(st.sampled_from([*ENTITIES, "e"]), max_size=2)):
        ids = n if n <= ROWS + 1 and draw(st.booleans()) else draw(st.integers(0, 5))
        request.row_entities.append(EntityColumn(entity=entity, ids=["c1"] * ids))
    return request


@st.composite
def row_request(draw: st.DrawFn) -> PredictRequest:
    value = st.one_of(st.floats(-1e6, 1e6, width=32), st.just(float("nan")), st.just(float("inf")))
    row = FeatureRow(
        features=draw(st.dictionaries(names, value, max_size=4)),
        entities=draw(st.dictionaries(st.sampled_from(ENTITIES), st.sampled_from(["c1", "s1", ""]), max_size=2)),
    )
    width = draw(widths)
    if width:
        row.vectors[draw(st.sampled_from(["emb", "v"]))].CopyFrom(FloatVector(values=np.full(width, 0.25, "<f4")))
    n = draw(row_counts)
    if n * (width + 4) > 2_000_000:  # keep the message within the fuzz server's limit (most of the time)
        n = draw(st.integers(1, 3))
    rows = [row] * n
    spread = draw(st.sampled_from(["same", "same", "new name per row", "new entity per row"]))
    request = PredictRequest(predictor=draw(st.sampled_from(["p", "p", "nope"])), rows=rows)
    if spread != "same":
        for i, r in enumerate(request.rows):
            if spread == "new name per row":
                r.features[f"f{i}"] = 1.0
            else:
                r.entities[f"e{i}"] = "x"
    request.context.update(draw(st.dictionaries(st.sampled_from(ENTITIES), st.sampled_from(["c1", "s1"]), max_size=2)))
    request.extra_models.extend(draw(st.lists(st.sampled_from(["s@1", "m", "x@1", "../m"]), max_size=2)))
    request.model_override = draw(st.sampled_from(["", "", "s@1", "m@9", "m@../1"]))
    return request


predict_bytes = st.one_of(
    st.builds(lambda r: r.SerializeToString(), dense_request()),
    st.builds(lambda r: r.SerializeToString(), row_request()),
    wire_v1(),
    st.binary(max_size=256),
)


# ---- ModelInferRequest
def _ids(count: int, prefix: int | None) -> bytes:
    """BYTES raw contents: `count` ids, each a 4-byte length and its bytes; prefix: a bogus first length."""
    out = b"".join(struct.pack("<I", 2) + b"c1" for _ in range(count))
    if prefix is not None:
        out = struct.pack("<I", prefix) + out[4:]
    return out


@st.composite
def tensor(draw: st.DrawFn, raw: bool) -> tuple[Tensor, bytes | None]:
    name = draw(st.one_of(st.sampled_from(["amount", "age", "rating", "emb", "input", *ENTITIES]), st.text(max_size=8)))
    datatype = draw(st.sampled_from([*NUMPY_TYPES, "BYTES", "BYTES", "BF16", "fp32", ""]))
    shape = draw(st.one_of(st.lists(dims, min_size=0, max_size=3), st.just([1] * 40)))
    count = int(np.prod([max(d, 0) for d in shape], dtype=object)) if shape else 0
    count = count if count <= 300_000 else draw(st.integers(0, 4))  # counts disagreeing with the shape
    count = max(0, count + draw(st.sampled_from([0, 0, 0, -1, 1, 7])))
    out = Tensor(name=name, datatype=datatype, shape=shape)
    payload: bytes | None = None
    if datatype == "BYTES":
        prefix = draw(st.sampled_from([None, None, 0, 2**32 - 1, 3]))
        if raw:
            payload = _ids(count, prefix) + draw(st.sampled_from([b"", b"", b"\0", b"\0\0\0\0"]))
        else:
            out.contents.bytes_contents.extend([b"c1"] * count)
    elif datatype in NUMPY_TYPES:
        if raw:
            payload = np.ones(count, NUMPY_TYPES[datatype]).tobytes() + draw(st.sampled_from([b"", b"", b"\0"]))
        elif datatype in TYPED_FIELDS:
            field = TYPED_FIELDS[datatype]
            if not draw(st.integers(0, 5)):  # the wrong field for the datatype
                field = draw(st.sampled_from(sorted(set(TYPED_FIELDS.values()) - {"bytes_contents"})))
            one = True if field == "bool_contents" else 1.0 if field.startswith("fp") else 1
            getattr(out.contents, field).extend([one] * count)
    if raw and draw(st.integers(0, 9)) == 0:
        out.contents.fp32_contents.append(1.0)  # typed contents beside raw ones
    return out, payload


@st.composite
def infer_request(draw: st.DrawFn) -> v2.ModelInferRequest:
    raw = draw(st.booleans())
    given = draw(st.lists(tensor(raw), min_size=0, max_size=4))
    many = draw(st.sampled_from([0, 0, 0, COLUMNS + 1, 3_000]))
    if many and given:  # thousands of tensors: copies of one, named apart or all the same
        same = draw(st.booleans())
        first, payload = given[0]
        small = payload if payload is None or len(payload) <= 16 else b""
        given = [
            (Tensor(name=first.name if same else f"x{i}", datatype=first.datatype, shape=first.shape), small)
            for i in range(many)
        ]
    request = v2.ModelInferRequest(
        model_name=draw(st.sampled_from(["p", "p", "p", "nope", "", "../p"])),
        model_version=draw(st.sampled_from(["", "", "1", "9", "s@1", "m@../1", "/etc"])),
        inputs=[t for t, _ in given],
    )
    if raw:
        payloads = [p if p is not None else b"" for _, p in given]
        extra = draw(st.sampled_from([0, 0, 0, 1, -1]))  # an extra or a missing raw_input_contents
        payloads = [*payloads, b""] if extra > 0 else payloads[:-1] if extra < 0 else payloads
        request.raw_input_contents.extend(payloads)
    for key in draw(st.lists(st.sampled_from([*ENTITIES, "priority", "triton_x"]), max_size=2)):
        request.parameters[key].string_param = "s1"
    if draw(st.integers(0, 7)) == 0:
        request.outputs.add(name=draw(st.sampled_from(["score", "probs"])))
    return request


infer_bytes = st.one_of(
    st.builds(lambda r: r.SerializeToString(), infer_request()),
    wire_v2(),
    st.binary(max_size=256),
)


# ---- KServe V2 REST bodies (test_fuzz_rest.py): JSON text with the tokens a JSON library would not write
class Raw(str):
    """JSON text written as is: NaN, a 4,000-digit integer, a lone surrogate escape, a 100,000-deep array."""


def dump(value: object) -> str:
    """JSON text of value, Raw parts verbatim (also as object keys)."""
    if isinstance(value, Raw):
        return value
    if isinstance(value, dict):
        return "{" + ",".join(f"{k if isinstance(k, Raw) else json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


SURROGATE = Raw('"\\ud800"')
HOSTILE_VALUES: list[object] = [
    *(Raw("[" * n + "]" * n) for n in (33, 1_000, 100_000)),  # nesting past every parser's depth
    Raw('{"a":' * 1_000 + "1" + "}" * 1_000),
    *(Raw(sign + "9" * k) for sign in ("", "-") for k in (19, 20, 21, 400, 4_000)),  # past int64, u64, float
    Raw("1e400"),
    Raw("NaN"),
    Raw("-Infinity"),
    SURROGATE,
    Raw('"a\\udfffb"'),
    Raw("[" + ",".join(["1000000000000000000"] * 20_000) + "]"),  # many huge dims: the product is never taken
    Raw("[" + ",".join(["9" * 300] * 2_000) + "]"),  # many 300-digit dims
    [1] * 40,
    [2**62, 2**62],
    [-1, 3],
    ["1", "2"],
    None,
    True,
    1.5,
    "x",
    "",
    {},
    [],
    {"a": [1, {"b": None}]},
]
CONTENT_TYPES = [  # mostly accepted ones, so that most bodies are read
    None,
    None,
    None,
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/json; charset=latin-1",
    "multipart/form-data; boundary=x",
    "",
]
CONTENT_ENCODINGS = [*[None] * 8, "identity", "gzip", "br"]
# The paths of a valid body that a hostile value replaces (a path of keys and list indexes).
REST_PATHS: list[tuple[object, ...]] = [
    (),
    ("id",),
    ("parameters",),
    ("parameters", "consumer_id"),
    ("parameters", "timeout"),
    ("parameters", "binary_data_output"),
    ("parameters", SURROGATE),
    ("inputs",),
    ("inputs", 0),
    ("inputs", 0, "name"),
    ("inputs", 0, "shape"),
    ("inputs", 0, "shape", 0),
    ("inputs", 0, "datatype"),
    ("inputs", 0, "data"),
    ("inputs", 0, "data", 0),
    ("inputs", 0, "parameters"),
    ("inputs", 0, "parameters", "binary_data_size"),
    ("inputs", 1, "data", 0),
    ("inputs", 1, "shape"),
    ("outputs",),
    ("outputs", 0),
    ("outputs", 0, "name"),
    ("outputs", 0, "parameters"),
    ("outputs", 0, "parameters", "binary_data"),
]


def rest_skeleton() -> dict[object, object]:
    """A valid V2 infer body for the test models' predictor p."""
    return {
        "id": "r1",
        "parameters": {"store_id": "s1"},
        "inputs": [
            {"name": "amount", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]},
            {"name": "consumer_id", "shape": [2], "datatype": "BYTES", "data": ["c1", "c2"]},
        ],
        "outputs": [{"name": "score", "parameters": {"binary_data": False}}],
    }


def _replace(doc: dict[object, object], path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    node: object = doc
    for key in path[:-1]:
        node = node[key]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return doc


@st.composite
def rest_request(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a V2 infer call: a valid body with 0-3 fields replaced by hostile values, maybe a NaN
    (the standard library's parser then reads the body), and hostile Content-Type, -Encoding and binary-data
    header values."""
    doc: object = rest_skeleton()
    for path in draw(st.lists(st.sampled_from(REST_PATHS), max_size=3, unique=True)):
        value = copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))  # the pool's lists and dicts stay as they are
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier replacement removed the path
            doc = _replace(doc, path, value)  # type: ignore[arg-type]
    if isinstance(doc, dict) and draw(st.integers(0, 3)) == 0:
        doc["nan"] = Raw("NaN")
    body = dump(doc).encode("utf-8", "surrogatepass")
    headers: dict[str, str] = {}
    for name, pool in (("Content-Type", CONTENT_TYPES), ("Content-Encoding", CONTENT_ENCODINGS)):
        value = draw(st.sampled_from(pool))
        if value is not None:
            headers[name] = value
    length = draw(st.sampled_from([None, None, None, "0", "-1", "abc", "9" * 30, str(len(body))]))
    if length is not None:
        headers["Inference-Header-Content-Length"] = length
    return body, headers
