"""KServe V2 REST bodies <-> the V2 protobuf messages of the gRPC servicer, so api.v2_convert does the rest.

An inference request's JSON tensors (and the binary-data extension's bytes) become one ModelInferRequest
whose inputs are all raw contents: v2_convert then decodes them exactly as it does a gRPC call's, and the
answer comes back as raw bytes, written as JSON numbers or as binary data, as the caller asked.

Binary-data extension: the header `Inference-Header-Content-Length: N` says the first N body bytes are the
JSON; an input with parameter "binary_data_size": K takes the next K bytes (in input order). An output is
sent as binary when it asks for "binary_data": true or the request sets "binary_data_output": true; the
response then carries the same header and the bytes after its JSON.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from sibyl.api.v2_convert import NUMPY_TYPES
from sibyl.errors import InvalidArgument
from sibyl.kserve.grpc_predict_v2_pb2 import InferParameter, ModelInferRequest, ModelInferResponse

HEADER_LENGTH = "inference-header-content-length"
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


def json_body(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from a request body (an empty body is {})."""
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what}: body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: body must be a JSON object, got {type(doc).__name__}")
    return doc


# ---- inference request
def parse_infer(body: bytes, header_length: str | None, model: str, version: str) -> tuple[ModelInferRequest, bool]:
    """(the request, whether the score goes back as binary data)."""
    binary = memoryview(b"")
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidArgument(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 <= n <= len(body):
            raise InvalidArgument(f"Inference-Header-Content-Length {n}, but the body has {len(body)} bytes")
        binary, body = memoryview(body)[n:], body[:n]
    doc = json_body(body, "inference request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument('inference request needs "inputs": a list of {name, shape, datatype, data} tensors')
    request = ModelInferRequest(model_name=model, model_version=version, id=_text(doc.get("id", ""), "id"))
    _parameters(doc.get("parameters"), request.parameters, "request")
    offset = 0
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise InvalidArgument(f"inputs[{i}] must be an object {{name, shape, datatype, data}}")
        name = _text(spec.get("name"), f"inputs[{i}].name")
        datatype = _text(spec.get("datatype"), f"input {name!r} datatype")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidArgument(f"input {name!r}: shape must be a list of integers, e.g. [3, 1]")
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        _parameters(spec.get("parameters"), tensor.parameters, f"input {name!r}")
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgument(f"input {name!r}: binary_data_size must be a byte count")
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"input {name!r}: binary_data_size {size} runs past the body's {len(binary) - offset} binary "
                    "bytes left; check Inference-Header-Content-Length"
                )
            request.raw_input_contents.append(bytes(binary[offset : offset + size]))
            offset += size
        elif "data" in spec:
            request.raw_input_contents.append(_raw(name, datatype, shape, spec["data"]))
        else:
            raise InvalidArgument(f'input {name!r} has no "data" and no binary_data_size parameter')
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} binary bytes after the inputs' binary_data_size values")
    wants_binary = bool((doc.get("parameters") or {}).get("binary_data_output", False))
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidArgument('"outputs" must be a list of {name, parameters}')
    for j, out in enumerate(outputs):
        if not isinstance(out, dict):
            raise InvalidArgument(f"outputs[{j}] must be an object {{name, parameters}}")
        request.outputs.add(name=_text(out.get("name"), f"outputs[{j}].name"))
        wants_binary |= bool((out.get("parameters") or {}).get("binary_data", False))
    return request, wants_binary


def _raw(name: str, datatype: str, shape: list[int], data: Any) -> bytes:
    """JSON "data" (flat or nested, row-major) as the raw little-endian bytes of its datatype."""
    count = math.prod(shape) if shape else 0
    if datatype == "BYTES":
        items = list(_flat(data))
        if len(items) != count:
            raise InvalidArgument(f"input {name!r}: {len(items)} elements in data, shape {shape} needs {count}")
        parts = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise InvalidArgument(f"input {name!r}: BYTES data holds strings (ids), not {type(item).__name__}")
            encoded = str(item).encode()
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    dtype = NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise InvalidArgument(f"input {name!r}: datatype {datatype!r} not supported; use FP32, INT64 or BYTES")
    try:
        wide = np.asarray(data, dtype=np.float64 if datatype in FLOAT_TYPES else dtype)
        with np.errstate(over="ignore"):  # an overflow to inf is reported below, by name
            values = wide.astype(dtype)
    except (ValueError, TypeError, OverflowError):
        raise InvalidArgument(f"input {name!r}: data is not a list of {datatype} numbers") from None
    if values.size != count:
        raise InvalidArgument(f"input {name!r}: {values.size} values in data, shape {shape} needs {count}")
    if datatype in FLOAT_TYPES and np.isinf(values).any() and not np.isinf(wide).any():
        raise InvalidArgument(f"input {name!r}: a value is too large for {datatype}")
    return values.tobytes()


def _flat(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flat(item)
    else:
        yield data


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    return value


def _parameters(given: Any, into: Any, what: str) -> None:
    if given is None:
        return
    if not isinstance(given, dict):
        raise InvalidArgument(f"{what} parameters must be an object")
    for key, value in given.items():
        if isinstance(value, bool):
            into[key].bool_param = value
        elif isinstance(value, int):
            into[key].int64_param = value
        elif isinstance(value, float):
            into[key].double_param = value
        elif isinstance(value, str):
            into[key].string_param = value
        else:
            raise InvalidArgument(f"{what} parameter {key!r}: use a string, number or boolean")


# ---- inference response
def encode_infer(answer: ModelInferResponse, binary: bool) -> tuple[bytes, int | None]:
    """(body, Inference-Header-Content-Length or None). The answer carries its score as raw contents."""
    doc: dict[str, Any] = {"model_name": answer.model_name, "model_version": answer.model_version}
    if answer.id:
        doc["id"] = answer.id
    doc["parameters"] = parameters(answer.parameters)
    output, raw = answer.outputs[0], answer.raw_output_contents[0]
    tensor: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
    doc["outputs"] = [tensor]
    if binary:
        tensor["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps(doc, separators=(",", ":")).encode()
        return header + raw, len(header)
    tensor["data"] = np.frombuffer(raw, dtype=NUMPY_TYPES[output.datatype]).tolist()
    return json.dumps(doc, separators=(",", ":")).encode(), None


def parameters(given: Mapping[str, InferParameter]) -> dict[str, Any]:
    return {key: getattr(p, p.WhichOneof("parameter_choice") or "string_param") for key, p in given.items()}


# ---- metadata, config, index, statistics: their protobuf messages as V2 / Triton JSON
def plain(message: Message) -> dict[str, Any]:
    """Every scalar field (defaults too: Triton's JSON has them) and every set message field; 64-bit integers
    stay numbers (protobuf's JSON mapping would write them as strings) and enums are their names."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _value(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.containing_oneof is not None and message.WhichOneof(field.containing_oneof.name) != field.name:
            continue
        elif field.message_type is not None:
            if message.HasField(field.name):
                out[field.name] = plain(value)
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return plain(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value
