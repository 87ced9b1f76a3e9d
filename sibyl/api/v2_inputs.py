"""A KServe V2 ModelInferRequest's input tensors -> sibyl's PredictRequest, within the request's work budget.

How tensors map onto sibyl (docs/protocols.md): a numeric tensor [N] or [N, k] is a feature (k > 1: a vector,
columns "name[0]".."name[k-1]"); the tensor named after the model's ONNX input ([N, columns]) gives every
column at once; a BYTES tensor [N] is a column of entity ids; string / integer request parameters are entity
ids shared by all rows.

Every tensor is checked first, before anything proportional to what it declares is built: its shape as
Python ints (no overflow), rows against server.max_rows, widths and their sum against server.max_columns,
rows x columns against server.max_elements, and the bytes actually present (raw contents of exactly
count x itemsize bytes, typed contents of exactly count values, no tensor with both). Only then are the
arrays made (np.frombuffer / np.asarray on the repeated field: no Python step per value), and BYTES raw
contents are split in at most N steps.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.kserve.grpc_predict_v2_pb2 import InferParameter, ModelInferRequest
from sibyl.serving.decode import RowBatch, from_arrays
from sibyl.serving.limits import Limits
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest

Tensor = ModelInferRequest.InferInputTensor
# Request parameters V2/Triton clients send for their own purposes: never entity ids.
RESERVED_PARAMETERS = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output", "headers"}
)
NUMPY_TYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
TYPED_FIELDS = {  # datatype -> InferTensorContents field (the spec has none for FP16/BF16)
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@dataclass(frozen=True, slots=True)
class _Input:
    """One tensor, checked: what it becomes and where its values are."""

    tensor: Tensor
    shape: list[int]
    width: int  # columns (0 for entity ids)
    payload: bytes | None  # raw contents, or None for typed contents
    columns: Sequence[str] | None  # the model's columns when this is its ONNX input


def to_rows(
    request: ModelInferRequest,
    model_override: str = "",
    matrix_inputs: Mapping[str, Sequence[str]] | None = None,
    limits: Limits | None = None,
) -> tuple[PredictRequest, RowBatch]:
    """The request (its header: predictor, id, context, override; no rows) and its decoded rows, as
    serving.decode.decode would give them, without packing the matrix into a PredictRequest and out again.
    model_override: what the request's model_version implies (serving.metadata.override);
    matrix_inputs: tensor name -> the columns it carries as [N, len(columns)] (the model's ONNX input);
    limits: the server's (default: Limits())."""
    limits = limits or Limits()
    names, matrix, entities = _tensors(request, matrix_inputs or {}, limits)
    header = PredictRequest(
        request_id=request.id,
        predictor=request.model_name,
        context=_context(request.parameters),
        model_override=model_override,
    )
    return header, from_arrays(header, names, matrix, entities, limits)


def to_predict_request(
    request: ModelInferRequest,
    model_override: str = "",
    matrix_inputs: Mapping[str, Sequence[str]] | None = None,
    limits: Limits | None = None,
) -> PredictRequest:
    """The same as one PredictRequest (dense rows): what a V2 call means in sibyl's own API."""
    limits = limits or Limits()
    names, matrix, entities = _tensors(request, matrix_inputs or {}, limits)
    return PredictRequest(
        request_id=request.id,
        predictor=request.model_name,
        context=_context(request.parameters),
        dense=DenseRows(feature_names=names, values=matrix.tobytes(), num_rows=matrix.shape[0]),
        row_entities=[EntityColumn(entity=e, ids=ids) for e, ids in entities.items()],
        model_override=model_override,
    )


def _tensors(
    request: ModelInferRequest, matrix_inputs: Mapping[str, Sequence[str]], limits: Limits
) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    """Every input tensor checked, then (feature column names, float32 [N, columns], entity -> ids per row)."""
    inputs = request.inputs
    if not inputs:
        raise InvalidArgument(
            "ModelInferRequest has no inputs: send feature tensors (FP32/INT64) or entity ids (BYTES)"
        )
    limits.columns(len(inputs), "input tensors")
    raw = request.raw_input_contents
    if len(raw) and len(raw) != len(inputs):
        raise InvalidArgument(f"{len(raw)} raw_input_contents for {len(inputs)} inputs; give one per input")
    limits.columns(len(request.parameters), "request parameters")
    checked, rows, width = _check(inputs, raw, matrix_inputs, limits)
    if len(checked) == 1 and checked[0].columns is not None:  # the model's whole row: one tensor, no copy
        return list(checked[0].columns), _numbers(checked[0]).reshape(rows, width), {}
    names: list[str] = []
    matrix = np.empty((rows, width), np.float32)
    entities: dict[str, list[str]] = {}
    col = 0
    for given in checked:
        tensor = given.tensor
        if not given.width:
            entities[tensor.name] = _strings(given, rows)  # their lengths: serving.decode checks them
            continue
        matrix[:, col : col + given.width] = _numbers(given).reshape(rows, given.width)
        col += given.width
        if given.columns is not None:
            names.extend(given.columns)
        elif given.width == 1:
            names.append(tensor.name)
        else:
            names.extend(f"{tensor.name}[{j}]" for j in range(given.width))  # width within max_columns
    return names, matrix, entities


def _check(
    inputs: Sequence[Tensor], raw: Sequence[bytes], matrix_inputs: Mapping[str, Sequence[str]], limits: Limits
) -> tuple[list[_Input], int, int]:
    """Every tensor against the budget and the bytes it carries; (checked inputs, rows, feature columns)."""
    checked: list[_Input] = []
    seen: set[str] = set()
    rows: int | None = None
    width = entities = 0  # feature columns; entity id columns (they count in the elements budget too)
    for i, tensor in enumerate(inputs):
        name = limits.name("input", tensor.name)
        if name in seen:
            raise InvalidArgument(f"input {name!r} is given twice; send each tensor once")
        seen.add(name)
        if len(tensor.shape) not in (1, 2):
            dims = list(tensor.shape) if len(tensor.shape) <= 8 else f"{len(tensor.shape)} dims"
            raise InvalidArgument(f"input {name!r}: shape {dims}; sibyl takes [N] or [N, k]")
        shape = [int(d) for d in tensor.shape]  # Python ints: products cannot overflow
        if any(d < 0 for d in shape):
            raise InvalidArgument(f"input {name!r}: shape {shape} must be [N] or [N, k] with N, k >= 1")
        n = shape[0]
        if rows is None:
            rows = n
        elif n != rows:
            raise InvalidArgument(f"input {name!r} has {n} rows, earlier inputs {rows}")
        if n == 0:
            raise InvalidArgument(f"input {name!r}: shape {shape} has no rows; send N >= 1")
        limits.rows(n, f"rows (input {name!r})")
        payload = raw[i] if len(raw) else None
        typed = [f.name for f, _ in tensor.contents.ListFields()]
        if payload is not None and typed:
            raise InvalidArgument(f"input {name!r}: both contents and raw_input_contents are set; send one")
        if tensor.datatype == "BYTES":
            if len(shape) == 2 and shape[1] != 1:
                raise InvalidArgument(f"entity ids {name!r}: shape {shape}; send one id per row, [N] or [N, 1]")
            entities += 1
            limits.elements(n, width + entities, "values and entity ids")
            _check_contents(name, "BYTES", typed, tensor, payload, n, shape)
            checked.append(_Input(tensor, shape, 0, payload, None))
            continue
        k = shape[1] if len(shape) == 2 else 1
        if k == 0:
            raise InvalidArgument(f"input {name!r}: shape {shape} has no columns; send k >= 1")
        limits.columns(k, f"columns in input {name!r}")
        columns = matrix_inputs.get(name)
        if columns is not None and k != len(columns):
            raise InvalidArgument(f"input {name!r}: {k} columns, the model takes {len(columns)}")
        width = limits.columns(width + k)
        limits.elements(n, width + entities, "values and entity ids" if entities else "values")
        _check_contents(name, tensor.datatype, typed, tensor, payload, n * k, shape)
        checked.append(_Input(tensor, shape, k, payload, columns))
    assert rows is not None  # inputs is not empty
    return checked, rows, width


def _check_contents(
    name: str, datatype: str, typed: list[str], tensor: Tensor, payload: bytes | None, count: int, shape: list[int]
) -> None:
    if datatype != "BYTES" and datatype not in NUMPY_TYPES:
        raise InvalidArgument(f"input {name!r}: datatype {datatype!r} not supported; use FP32, INT64 or BYTES")
    if payload is not None:
        if datatype == "BYTES":
            if len(payload) < 4 * count:  # each element: a 4-byte length, then its bytes
                raise InvalidArgument(
                    f"entity ids {name!r}: raw contents has {len(payload)} bytes; {count} elements need at least "
                    f"{4 * count}"
                )
            return
        needed = count * NUMPY_TYPES[datatype].itemsize
        if len(payload) != needed:
            raise InvalidArgument(
                f"input {name!r}: raw contents has {len(payload)} bytes; shape {shape} of {datatype} needs {needed}"
            )
        return
    field = TYPED_FIELDS.get(datatype)
    if field is None:
        raise InvalidArgument(f"input {name!r}: {datatype} has no typed contents field; send it as raw contents")
    other = [f for f in typed if f != field]
    if other:
        raise InvalidArgument(f"input {name!r}: contents.{other[0]} is set for a {datatype} tensor; use {field}")
    given = len(getattr(tensor.contents, field))
    if given != count:
        what = "entity ids" if datatype == "BYTES" else "input"
        raise InvalidArgument(f"{what} {name!r}: {given} values in contents.{field}, shape {shape} needs {count}")


def _numbers(given: _Input) -> np.ndarray:
    tensor, datatype = given.tensor, given.tensor.datatype
    dtype = NUMPY_TYPES[datatype]
    if given.payload is not None:
        values = np.frombuffer(given.payload, dtype=dtype)
    else:
        values = np.asarray(getattr(tensor.contents, TYPED_FIELDS[datatype]))  # the field's own type, no copy loop
        if values.dtype != dtype and dtype.kind in "iu" and values.size:
            info = np.iinfo(dtype)
            low, high = int(values.min()), int(values.max())
            if low < info.min or high > info.max:
                bad = low if low < info.min else high
                raise InvalidArgument(f"input {tensor.name!r}: value {bad} is out of range for {datatype}")
    if values.dtype == np.float32:  # nothing to narrow; serving.decode refuses +-inf in the matrix
        return values.astype(np.float32)  # a writable copy of the message's bytes
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if np.isinf(out).any() and not np.isinf(values).any():
        raise InvalidArgument(f"input {tensor.name!r}: a value is too large for float32")
    return out


def _strings(given: _Input, count: int) -> list[str]:
    name = given.tensor.name
    items = list(given.tensor.contents.bytes_contents) if given.payload is None else _split(name, given.payload, count)
    try:
        return [item.decode() for item in items]
    except UnicodeDecodeError:
        raise InvalidArgument(f"entity ids {name!r}: not UTF-8 text") from None


def _split(name: str, payload: bytes, count: int) -> list[bytes]:
    """BYTES raw contents: `count` elements, each a 4-byte little-endian length, then that many bytes. At most
    `count` steps; bytes left over or missing are an error."""
    items, offset, end = [], 0, len(payload)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidArgument(f"entity ids {name!r}: raw contents end inside element {i}'s length prefix")
        (length,) = struct.unpack_from("<I", payload, offset)
        offset += 4
        if length > end - offset:
            raise InvalidArgument(f"entity ids {name!r}: element {i} of {length} bytes runs past the end")
        items.append(payload[offset : offset + length])
        offset += length
    if offset != end:
        raise InvalidArgument(
            f"entity ids {name!r}: {end - offset} bytes of raw contents after the {count} elements the shape declares"
        )
    return items


def _context(parameters: Mapping[str, InferParameter]) -> dict[str, str]:
    context = {}
    for key, value in parameters.items():
        if key in RESERVED_PARAMETERS or key.startswith("triton_"):
            continue
        kind = value.WhichOneof("parameter_choice")
        if kind == "string_param":
            context[key] = value.string_param
        elif kind in ("int64_param", "uint64_param"):
            context[key] = str(getattr(value, kind))
    return context
