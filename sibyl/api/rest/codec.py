"""KServe V2 REST bodies <-> sibyl, straight: an inference request's JSON tensors (and the binary-data extension's
bytes) become an InferCall (its data as DataValues, its binary data as RawContents), which api.v2.tensors checks
and decodes as it does a gRPC call's; the Answer becomes the JSON response, its score as JSON numbers or as
binary data, as the caller asked. The metadata, config, index and statistics messages (api.v2.messages) are
written as Triton's JSON (triton_json).

Binary-data extension: the header `Inference-Header-Content-Length: N` says the first N body bytes are the
JSON; an input with parameter "binary_data_size": K takes the next K bytes (in input order). An output is
sent as binary when it asks for "binary_data": true or the request sets "binary_data_output": true; the
response then carries the same header and the bytes after its JSON.

Bodies are read with orjson. One it refuses is read again by the standard library's parser, which takes what
V2 clients send beyond strict JSON (NaN and Infinity: Python's json.dumps writes missing values so) and says
readably why it refuses the rest.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from google.protobuf.message import Message

from sibyl.api.v2.infer import OUTPUT
from sibyl.api.v2.tensors import DataValues, InferCall, InputTensor, Parameter, RawContents
from sibyl.errors import InvalidArgument
from sibyl.serving.answer import Answer

if TYPE_CHECKING:
    from sibyl.api.wire import Field

HEADER_LENGTH = "inference-header-content-length"
PARAMETER_TYPES = (bool, int, float, str)


def json_body(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from a request body (an empty body is {})."""
    if not data.strip():
        return {}
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidArgument(f"{what}: body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: body must be a JSON object, got {type(doc).__name__}")
    return doc


def to_json(doc: Any) -> bytes:
    return orjson.dumps(doc)


# ---- inference request
def parse_infer(body: bytes, header_length: str | None, model: str, version: str) -> InferCall:
    """The request as api.v2.tensors reads it; raw_output: the score goes back as binary data."""
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
    specs = doc.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise InvalidArgument('inference request needs "inputs": a list of {name, shape, datatype, data} tensors')
    request_id = _text(doc.get("id", ""), "id")
    parameters = _parameters(doc.get("parameters"), "request")
    inputs = []
    offset = 0
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise InvalidArgument(f"inputs[{i}] must be an object {{name, shape, datatype, data}}")
        name = _text(spec.get("name"), f"inputs[{i}].name")
        datatype = _text(spec.get("datatype"), f"input {name!r} datatype")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidArgument(f"input {name!r}: shape must be a list of integers, e.g. [3, 1]")
        size = _parameters(spec.get("parameters"), f"input {name!r}").get("binary_data_size")
        contents: RawContents | DataValues
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgument(f"input {name!r}: binary_data_size must be a byte count")
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"input {name!r}: binary_data_size {size} runs past the body's {len(binary) - offset} binary "
                    "bytes left; check Inference-Header-Content-Length"
                )
            contents = RawContents(binary[offset : offset + size])
            offset += size
        elif "data" in spec:
            contents = DataValues(spec["data"])
        else:
            raise InvalidArgument(f'input {name!r} has no "data" and no binary_data_size parameter')
        inputs.append(InputTensor(name, datatype, shape, contents))
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} binary bytes after the inputs' binary_data_size values")
    wants_binary = bool(parameters.get("binary_data_output", False))
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidArgument('"outputs" must be a list of {name, parameters}')
    names = []
    for j, out in enumerate(outputs):
        if not isinstance(out, dict):
            raise InvalidArgument(f"outputs[{j}] must be an object {{name, parameters}}")
        names.append(_text(out.get("name"), f"outputs[{j}].name"))
        wants_binary |= bool(_parameters(out.get("parameters"), f"outputs[{j}]").get("binary_data", False))
    return InferCall(model, version, request_id, inputs, parameters, names, wants_binary, _timeout_s(parameters))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    return value


def _parameters(given: Any, what: str) -> dict[str, Parameter]:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise InvalidArgument(f"{what} parameters must be an object")
    for key, value in given.items():
        if not isinstance(value, PARAMETER_TYPES):
            raise InvalidArgument(f"{what} parameter {key!r}: use a string, number or boolean")
    return given


def _timeout_s(parameters: dict[str, Parameter]) -> float | None:
    """Triton's "timeout" request parameter (microseconds) is the call's deadline; HTTP carries none of its own."""
    micros = parameters.get("timeout")
    if isinstance(micros, int) and not isinstance(micros, bool) and micros > 0:
        return micros / 1e6
    return None


# ---- inference response
def encode_answer(answer: Answer, call: InferCall, parameters: dict[str, str]) -> tuple[bytes, int | None]:
    """(body, Inference-Header-Content-Length or None): the score as binary data after the JSON when the call
    asked for it, else as JSON numbers (the float32 values, written as the doubles they are); parameters: the
    response's (api.v2.infer.answer_parameters)."""
    scores = answer.scored[0].scores  # the model that answered (primary, arm or override)
    doc: dict[str, Any] = {"model_name": call.model, "model_version": answer.scored[0].model.ref}
    if call.id:
        doc["id"] = call.id
    doc["parameters"] = parameters
    tensor: dict[str, Any] = {"name": OUTPUT, "datatype": "FP32", "shape": list(scores.shape)}
    doc["outputs"] = [tensor]
    if call.raw_output:
        raw = scores.astype("<f4", copy=False).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        header = orjson.dumps(doc)
        return header + raw, len(header)
    tensor["data"] = scores.astype(np.float32, copy=False).astype(np.float64).ravel()
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), None


# ---- metadata, config, index, statistics: their protobuf messages as V2 / Triton JSON
def triton_json(message: Message) -> dict[str, Any]:
    """A message as Triton writes it in JSON: every scalar field (defaults too) and every set message field;
    64-bit integers stay numbers (protobuf's JSON mapping would write them as strings), enums are their names."""
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
                out[field.name] = triton_json(value)
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: Field, value: Any) -> Any:
    if field.message_type is not None:
        return triton_json(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value
