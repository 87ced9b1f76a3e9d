"""A KServe V2 infer call, whatever its transport, -> sibyl's request header and rows, within its work budget.

Both transports describe a call the same way (InferCall: model, version, id, parameters and InputTensors, each
with its Contents: RawContents, DataValues parsed from JSON, or gRPC typed contents): gRPC from its
ModelInferRequest (api.v2.messages), REST from its JSON and binary data (api.rest.codec). This module checks and decodes that description, so a bad input is refused for the same
reason, with the same message, over either port.

How tensors map onto sibyl (docs/protocols.md): a numeric tensor [N] or [N, k] is a feature (k > 1: a vector,
columns "name[0]".."name[k-1]"); the tensor named after the model's ONNX input ([N, columns]) gives every
column at once; a BYTES tensor [N] is a column of entity ids; string / integer request parameters are entity
ids shared by all rows.

Every tensor is checked first, before anything proportional to what it declares is built: its shape as
Python ints (no overflow), rows against server.max_rows, widths and their sum against server.max_columns,
rows x columns against server.max_elements, and the values actually present (Contents.check: raw bytes of
exactly count x itemsize, typed contents of exactly count values). Only then are the arrays made (no Python
step per value), and BYTES raw contents are split in at most N steps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.serving.decode import RowBatch, from_arrays
from sibyl.serving.limits import Limits
from sibyl.v1.predict_pb2 import PredictRequest

Parameter = str | int | float | bool  # a V2 parameter's value (InferParameter's choices)
# Request parameters V2/Triton clients send for their own purposes: never entity ids.
RESERVED_PARAMETERS = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output", "headers"}
)
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
NUMPY_TYPES: dict[str, np.dtype[Any]] = {
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


class Contents(Protocol):
    """Where a tensor's values are: raw bytes, values parsed from JSON, or gRPC typed contents."""

    def check(self, name: str, datatype: str, count: int, shape: list[int]) -> None:
        """Refuse contents that do not hold `count` values of `datatype`, before any array is built
        (datatype is BYTES or one of NUMPY_TYPES)."""

    def numbers(self, name: str, datatype: str, count: int, shape: list[int]) -> np.ndarray:
        """The values as a 1-D array of the datatype's (or a wider) numpy type."""

    def ids(self, name: str, count: int, shape: list[int]) -> list[str]:
        """A BYTES tensor's `count` elements as text."""


@dataclass(frozen=True, slots=True)
class RawContents:
    """Little-endian bytes: a gRPC raw_input_contents entry, or the REST binary-data extension's slice."""

    data: bytes | memoryview

    def check(self, name: str, datatype: str, count: int, shape: list[int]) -> None:
        size = len(self.data)
        if datatype == "BYTES":
            if size < 4 * count:  # each element: a 4-byte length, then its bytes
                raise InvalidArgument(
                    f"entity ids {name!r}: raw contents has {size} bytes; {count} elements need at least {4 * count}"
                )
            return
        needed = count * NUMPY_TYPES[datatype].itemsize
        if size != needed:
            raise InvalidArgument(
                f"input {name!r}: raw contents has {size} bytes; shape {shape} of {datatype} needs {needed}"
            )

    def numbers(self, name: str, datatype: str, count: int, shape: list[int]) -> np.ndarray:
        return np.frombuffer(self.data, dtype=NUMPY_TYPES[datatype])

    def ids(self, name: str, count: int, shape: list[int]) -> list[str]:
        """`count` elements, each a 4-byte little-endian length, then that many bytes. At most `count` steps;
        bytes left over or missing are an error."""
        data = self.data
        items, offset, end = [], 0, len(data)
        for i in range(count):
            if offset + 4 > end:
                raise InvalidArgument(f"entity ids {name!r}: raw contents end inside element {i}'s length prefix")
            (length,) = struct.unpack_from("<I", data, offset)
            offset += 4
            if length > end - offset:
                raise InvalidArgument(f"entity ids {name!r}: element {i} of {length} bytes runs past the end")
            items.append(data[offset : offset + length])
            offset += length
        if offset != end:
            raise InvalidArgument(
                f"entity ids {name!r}: {end - offset} bytes of raw contents after the {count} elements the shape "
                "declares"
            )
        return utf8(name, items)


@dataclass(frozen=True, slots=True)
class DataValues:
    """Values as parsed from JSON: numbers (or ids) in a list, flat or nested, row-major (REST's "data"). They
    are in memory already (parsed from a body within server.max_message_bytes), so they are counted as they are
    decoded."""

    data: Any

    def check(self, name: str, datatype: str, count: int, shape: list[int]) -> None:
        return None

    def numbers(self, name: str, datatype: str, count: int, shape: list[int]) -> np.ndarray:
        dtype = NUMPY_TYPES[datatype]
        try:
            wide = _floats(self.data) if datatype in FLOAT_TYPES else np.asarray(self.data, dtype=dtype)
            with np.errstate(over="ignore"):  # an overflow to inf is reported below, by name
                values = wide.astype(dtype, copy=False)
        except (ValueError, TypeError, OverflowError):
            raise InvalidArgument(f"input {name!r}: data is not a list of {datatype} numbers") from None
        if values.size != count:
            raise InvalidArgument(f"input {name!r}: {values.size} values in data, shape {shape} needs {count}")
        if datatype in FLOAT_TYPES and np.isinf(values).any() and not np.isinf(wide).any():
            raise InvalidArgument(f"input {name!r}: a value is too large for {datatype}")
        return values

    def ids(self, name: str, count: int, shape: list[int]) -> list[str]:
        items = list(_leaves(self.data))
        if len(items) != count:
            raise InvalidArgument(f"input {name!r}: {len(items)} elements in data, shape {shape} needs {count}")
        ids = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise InvalidArgument(f"input {name!r}: BYTES data holds strings (ids), not {type(item).__name__}")
            ids.append(item if isinstance(item, str) else str(item))
        try:
            "".join(ids).encode()  # a lone surrogate ("\ud800") is JSON, not text
        except UnicodeEncodeError:
            raise InvalidArgument(f"entity ids {name!r}: not UTF-8 text") from None
        return ids


def _floats(data: Any) -> np.ndarray:
    """Numbers as float64: a flat list in one pass (np.fromiter, half the time of np.asarray on a list), anything
    else (nested lists, null, a refusal to word) as np.asarray reads it."""
    if isinstance(data, list) and data and not isinstance(data[0], list):
        try:
            return np.fromiter(data, np.float64, count=len(data))
        except (ValueError, TypeError, OverflowError):
            pass
    return np.asarray(data, dtype=np.float64)


def _leaves(data: Any) -> Iterator[Any]:
    """The items of nested lists that are not lists, row-major (a non-list is its own one item); no recursion."""
    stack = [iter((data,))]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: Sequence[int]  # as declared (a protobuf repeated int64, or a JSON list of ints)
    contents: Contents


@dataclass(frozen=True, slots=True)
class InferCall:
    """One V2 infer call as both transports describe it."""

    model: str  # the predictor
    version: str  # "" (route as usual), "7" (the primary's version 7) or "model@7"
    id: str
    inputs: Sequence[InputTensor]
    parameters: Mapping[str, Parameter]
    outputs: Sequence[str] = ()  # the output names asked for (none: all)
    raw_output: bool = False  # the score goes back as raw bytes (gRPC: raw inputs were sent; REST: binary data)
    timeout_s: float | None = None  # the call's own deadline (REST: Triton's "timeout" parameter)


@dataclass(frozen=True, slots=True)
class _Checked:
    """One tensor, checked: what it becomes."""

    tensor: InputTensor
    shape: list[int]
    count: int  # values (rows x width, or rows for entity ids)
    width: int  # columns (0 for entity ids)
    columns: Sequence[str] | None  # the model's columns when this is its ONNX input


def to_rows(
    call: InferCall,
    model_override: str = "",
    matrix_inputs: Mapping[str, Sequence[str]] | None = None,
    limits: Limits | None = None,
) -> tuple[PredictRequest, RowBatch]:
    """The request (its header: predictor, id, context, override; no rows) and its decoded rows, as
    serving.decode.decode would give them for the same rows in sibyl's own API.
    model_override: what the call's version implies (serving.metadata.override);
    matrix_inputs: tensor name -> the columns it carries as [N, len(columns)] (the model's ONNX input);
    limits: the server's (default: Limits())."""
    limits = limits or Limits()
    names, matrix, entities = to_columns(call, matrix_inputs or {}, limits)
    header = PredictRequest(
        request_id=call.id, predictor=call.model, context=context(call.parameters), model_override=model_override
    )
    return header, from_arrays(header, names, matrix, entities, limits)


def to_columns(
    call: InferCall, matrix_inputs: Mapping[str, Sequence[str]], limits: Limits
) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    """Every input tensor checked, then (feature column names, float32 [N, columns], entity -> ids per row)."""
    inputs = call.inputs
    if not inputs:
        raise InvalidArgument("infer request has no inputs: send feature tensors (FP32/INT64) or entity ids (BYTES)")
    limits.columns(len(inputs), "input tensors")
    limits.columns(len(call.parameters), "request parameters")
    checked, rows, width = _check(inputs, matrix_inputs, limits)
    if len(checked) == 1 and checked[0].columns is not None:  # the model's whole row: one tensor, no copy
        return list(checked[0].columns), _float32(checked[0]).reshape(rows, width), {}
    names: list[str] = []
    matrix = np.empty((rows, width), np.float32)
    entities: dict[str, list[str]] = {}
    col = 0
    for given in checked:
        tensor = given.tensor
        if not given.width:  # their lengths: serving.decode checks them
            entities[tensor.name] = tensor.contents.ids(tensor.name, given.count, given.shape)
            continue
        matrix[:, col : col + given.width] = _float32(given).reshape(rows, given.width)
        col += given.width
        if given.columns is not None:
            names.extend(given.columns)
        elif given.width == 1:
            names.append(tensor.name)
        else:
            names.extend(f"{tensor.name}[{j}]" for j in range(given.width))  # width within max_columns
    return names, matrix, entities


def _check(
    inputs: Sequence[InputTensor], matrix_inputs: Mapping[str, Sequence[str]], limits: Limits
) -> tuple[list[_Checked], int, int]:
    """Every tensor against the budget and the values it carries; (checked inputs, rows, feature columns)."""
    checked: list[_Checked] = []
    seen: set[str] = set()
    rows: int | None = None
    width = entities = 0  # feature columns; entity id columns (they count in the elements budget too)
    for tensor in inputs:
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
        datatype = tensor.datatype
        if datatype == "BYTES":
            if len(shape) == 2 and shape[1] != 1:
                raise InvalidArgument(f"entity ids {name!r}: shape {shape}; send one id per row, [N] or [N, 1]")
            entities += 1
            limits.elements(n, width + entities, "values and entity ids")
            tensor.contents.check(name, datatype, n, shape)
            checked.append(_Checked(tensor, shape, n, 0, None))
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
        if datatype not in NUMPY_TYPES:
            raise InvalidArgument(f"input {name!r}: datatype {datatype!r} not supported; use FP32, INT64 or BYTES")
        tensor.contents.check(name, datatype, n * k, shape)
        checked.append(_Checked(tensor, shape, n * k, k, columns))
    assert rows is not None  # inputs is not empty
    return checked, rows, width


def _float32(given: _Checked) -> np.ndarray:
    """A numeric tensor's values as float32, in an array of its own (serving.decode refuses +-inf in it)."""
    tensor = given.tensor
    values = tensor.contents.numbers(tensor.name, tensor.datatype, given.count, given.shape)
    if values.dtype == np.float32:  # nothing to narrow; a copy unless the array is already this call's own
        return values if values.base is None and values.flags.writeable else values.copy()
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if np.isinf(out).any() and not np.isinf(values).any():
        raise InvalidArgument(f"input {tensor.name!r}: a value is too large for float32")
    return out


def utf8(name: str, items: Sequence[bytes | memoryview]) -> list[str]:
    """Entity ids as text; bytes that are not UTF-8 are the caller's error."""
    try:
        return [str(item, "utf-8") for item in items]
    except UnicodeDecodeError:
        raise InvalidArgument(f"entity ids {name!r}: not UTF-8 text") from None


def context(parameters: Mapping[str, Parameter]) -> dict[str, str]:
    """String and integer request parameters are entity ids shared by all rows, but for the clients' own."""
    out = {}
    for key, value in parameters.items():
        if key in RESERVED_PARAMETERS or key.startswith("triton_"):
            continue
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = str(value)
    return out
