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

Every body is bounded before it is parsed and every field before it is used, so a hostile body is a 400 that
says what to fix, never a 500 or a stall (docs/protocols.md, "Hostile bodies"): nesting depth (MAX_DEPTH;
counted over the brackets outside strings, vectorized, and only when the body has more brackets than that, so
a usual body pays two byte counts), integers in shapes and parameters within int64 (nothing formats or
multiplies a larger one), text that is UTF-8 (a lone surrogate is JSON but not text), and the type of every
field read.
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
MAX_DEPTH = 32  # nesting levels of arrays and objects in a body; a V2 body needs about 5 (docs/protocols.md)
MAX_LISTED_DIMS = 8  # a longer shape is refused by its length alone (api.v2.tensors), its values never read
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what a gRPC shape or int64_param can hold
OPEN, CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
QUOTE, BACKSLASH = ord('"'), ord("\\")


def json_body(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from a request body (an empty body is {}), nested at most MAX_DEPTH levels."""
    if not data.strip():
        return {}
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH:  # else it cannot nest deeper: no scan
        depth = nesting(data)
        if depth > MAX_DEPTH:
            raise InvalidArgument(
                f"{what}: JSON nested {depth} levels deep; at most {MAX_DEPTH}: send tensors as flat or [N, k] lists"
            )
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:  # integers past 64 bits become floats, as orjson reads them: nothing downstream sees a huge int
            doc = json.loads(data, parse_int=_json_int)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidArgument(f"{what}: body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: body must be a JSON object, got {type(doc).__name__}")
    return doc


def nesting(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, brackets inside strings not counted (a quote
    after an odd run of backslashes is inside its string). Over the positions of brackets and quotes only, in
    numpy: a parser (orjson's recursion included) never sees a body deeper than the check allowed."""
    text = np.frombuffer(data, np.uint8)
    quotes = np.flatnonzero(text == QUOTE)
    if quotes.size and b"\\" in data:
        slashes = np.flatnonzero(text == BACKSLASH)
        breaks = np.flatnonzero(np.diff(slashes) != 1)
        ends, starts = np.append(slashes[breaks], slashes[-1]), np.append(slashes[0], slashes[breaks + 1])
        escaping = ends[(ends - starts) % 2 == 0]  # runs of odd length end just before an escaped quote
        quotes = quotes[~np.isin(quotes - 1, escaping)]
    opens = np.isin(text, OPEN)
    brackets = np.flatnonzero(opens | np.isin(text, CLOSE))
    outside = np.searchsorted(quotes, brackets) % 2 == 0  # an even number of quotes before it
    steps = np.where(opens[brackets], 1, -1)[outside]
    return int(np.cumsum(steps).max(initial=0))


def _json_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= 20 else float(digits)


def to_json(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # a lone surrogate in an error message: the standard library escapes it
        return json.dumps(doc).encode()


# ---- inference request
def parse_infer(body: bytes, header_length: str | None, model: str, version: str) -> InferCall:
    """The request as api.v2.tensors reads it; raw_output: the score goes back as binary data."""
    binary = memoryview(b"")
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit() and len(header_length) <= 18):
            raise InvalidArgument(
                f"Inference-Header-Content-Length {header_length[:20]!r} is not a number (a byte count)"
            )
        n = int(header_length)
        if n > len(body):
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
        shape = _shape(spec.get("shape"), name)
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
    if not value.isascii():
        _utf8(value, what)
    return value


def _utf8(value: str, what: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:  # "\ud800" is JSON (the standard library's parser takes it), not text
        raise InvalidArgument(f"{what} is not UTF-8 text (a lone surrogate escape such as \\ud800)") from None


def _shape(value: Any, name: str) -> list[int]:
    """A list of int64s (as over gRPC); one longer than MAX_LISTED_DIMS goes on unread: its length refuses it."""
    if isinstance(value, list) and (
        len(value) > MAX_LISTED_DIMS or all(type(d) is int and INT64_MIN <= d <= INT64_MAX for d in value)
    ):
        return value
    raise InvalidArgument(f"input {name!r}: shape must be a list of integers (int64), e.g. [3, 1]")


def _parameters(given: Any, what: str) -> dict[str, Parameter]:
    """Values as InferParameter holds them: bool, int64, float or UTF-8 text."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise InvalidArgument(f"{what} parameters must be an object")
    for key, value in given.items():
        kind = type(value)
        if kind is str:
            if not (key.isascii() and value.isascii()):
                _utf8(key + value, f"{what} parameter {key!r}")
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise InvalidArgument(f"{what} parameter {key!r}: integer out of int64 range")
        elif kind is not bool and kind is not float:
            raise InvalidArgument(f"{what} parameter {key!r}: use a string, number or boolean")
        elif not key.isascii():
            _utf8(key, f"{what} parameter {key!r}")
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
