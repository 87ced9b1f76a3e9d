"""Feast's Redis online-store layout, read without Feast: keys, field names, Value and Timestamp protos.

What `feast materialize` writes through RedisOnlineStore (Feast's "Online Store Format Spec"; checked against
feast 0.67, tests/features/test_feast_compat.py):

Key:    serialized entity key + project name (utf-8), as raw bytes: one hash per entity key and project.
        v3 (Feast's default): <u32 number of join keys> then per join key <u32 2 (STRING)> <u32 len> <name>,
        then per value <u32 value type> <u32 len> <bytes>. v2: the same without the count and the name lengths.
        All integers little-endian; int64 ids are 8 bytes, int32 4, strings utf-8.
Field:  murmur3_32(b"<view>:<feature>", seed 0) as 4 little-endian bytes; `_ts:<view>` (plain text) holds the
        view's event timestamp, a google.protobuf.Timestamp.
Value:  a feast.types.Value proto. Decoded here by hand (docs/features.md#feast-values says why): the numeric
        oneofs a model can take (int32, int64, float, double, bool, unix_timestamp and their lists); an empty
        message or null_val is "no value"; strings, bytes, maps and sets are not model inputs (DecodeError).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np

from sibyl.features.base import FeatureValue
from sibyl.features.codec import DecodeError
from sibyl.models.manifest import FeatureSpec

JoinKeyType = Literal["int64", "int32", "string", "bytes"]
SerializationVersion = Literal[2, 3]
_VALUE_TYPE = {"bytes": 1, "string": 2, "int32": 3, "int64": 4}  # feast.types.ValueType.Enum
_U32 = struct.Struct("<I")


# ---- keys and fields
@lru_cache(maxsize=256)
def _key_head(join_key: str, value_type: JoinKeyType, version: int) -> bytes:
    """Everything before the id's length: the same for every id of a join key."""
    name = join_key.encode()
    head = _U32.pack(1) + _U32.pack(2) + _U32.pack(len(name)) if version >= 3 else _U32.pack(2)
    return head + name + _U32.pack(_VALUE_TYPE[value_type])


@lru_cache(maxsize=256)
def key_maker(join_key: str, value_type: JoinKeyType, project: str, version: int = 3) -> Callable[[str], bytes]:
    """entity_key for the ids of one join key, its constant parts built once (a request reads many ids)."""
    head, tail = _key_head(join_key, value_type, version), project.encode()
    if value_type == "int64" or value_type == "int32":
        fixed = struct.Struct("<q" if value_type == "int64" else "<i")
        head, pack = head + _U32.pack(fixed.size), fixed.pack

        def number_key(entity_id: str) -> bytes:
            try:
                return head + pack(int(entity_id)) + tail
            except (ValueError, struct.error):  # not an integer, or out of range
                raise ValueError(f"id {entity_id!r} is not a Feast {value_type}") from None

        return number_key

    def text_key(entity_id: str) -> bytes:  # string, and bytes given as text (utf-8)
        value = entity_id.encode()
        return head + _U32.pack(len(value)) + value + tail

    return text_key


def entity_key(join_key: str, value_type: JoinKeyType, entity_id: str, project: str, version: int = 3) -> bytes:
    """The Redis key of one entity; ValueError when the id does not fit the join key's type (e.g. "x" as int64)."""
    return key_maker(join_key, value_type, project, version)(entity_id)


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit (what `mmh3.hash(key, signed=False)` gives Feast); names are hashed once, cached."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h, n = seed & mask, len(data)
    whole = n - n % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail = int.from_bytes(data[whole:], "little")
    if n % 4:
        k = (tail * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


@lru_cache(maxsize=65_536)
def field(view: str, feature: str) -> bytes:
    """The hash field of `view:feature`."""
    return murmur3_32(f"{view}:{feature}".encode()).to_bytes(4, "little")


def ts_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


# ---- protobuf wire format: just enough for Value and Timestamp
def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    """int32/int64 varints are two's complement over 64 bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def proto_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a message: a varint or fixed width as int, length-delimited as bytes."""
    out: list[tuple[int, int, int | bytes]] = []
    pos, n = 0, len(buf)
    while pos < n:
        tag, pos = read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise DecodeError(f"unsupported protobuf wire type {wire}")
        if pos > n:
            raise DecodeError("truncated protobuf message")
        out.append((number, wire, value))
    return out


def timestamp_s(raw: bytes | None) -> float | None:
    """A google.protobuf.Timestamp as Unix seconds; None for no timestamp (absent or all zero)."""
    if not raw:
        return None
    seconds = nanos = 0
    for number, _, value in proto_fields(raw):
        if isinstance(value, int) and number == 1:
            seconds = _signed(value)
        elif isinstance(value, int) and number == 2:
            nanos = _signed(value)
    return seconds + nanos / 1e9 if seconds or nanos else None


_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_SCALARS = {3: "int32", 4: "int64", 5: "double", 6: "float", 7: "bool", 8: "unix_timestamp"}
_LISTS = {13: "int32", 14: "int64", 15: "double", 16: "float", 17: "bool", 18: "unix_timestamp"}
_NOT_NUMBERS = {1: "bytes", 2: "string", 11: "bytes list", 12: "string list"}


def _scalar(number: int, wire: int, value: int | bytes) -> float:
    if isinstance(value, bytes):
        raise DecodeError(f"{_SCALARS[number]} value with a length-delimited encoding")
    if wire != {5: 1, 6: 5}.get(number, 0):
        raise DecodeError(f"{_SCALARS[number]} value with wire type {wire}")
    if number == 5:
        return float(_F64.unpack(value.to_bytes(8, "little"))[0])
    if number == 6:
        return float(_F32.unpack(value.to_bytes(4, "little"))[0])
    return _decode_int(_SCALARS[number], value)


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _list(number: int, payload: bytes) -> np.ndarray:
    """The numbers of an Int32List/Int64List/DoubleList/FloatList/BoolList message (packed or not)."""
    kind = _LISTS[number]
    items: list[float] = []
    for inner, wire, value in proto_fields(payload):
        if inner != 1:
            continue
        if wire == 2:  # packed: proto3's default for repeated numbers
            assert isinstance(value, bytes)
            if kind == "float":
                items.extend(np.frombuffer(value, dtype="<f4").tolist())
            elif kind == "double":
                items.extend(np.frombuffer(value, dtype="<f8").tolist())
            else:
                pos = 0
                while pos < len(value):
                    v, pos = read_varint(value, pos)
                    items.append(_decode_int(kind, v))
        else:
            items.append(_scalar(number - 10, wire, value))  # unpacked: FooList field 1 decodes like foo_val
    return np.asarray(items, dtype=np.float32)


def _decode_int(kind: str, v: int) -> float:
    if kind == "int32":
        return float(_int32(v))
    if kind == "bool":
        return float(v != 0)
    return float(_signed(v))


LIST_TAGS = {0x6A: 13, 0x72: 14, 0x7A: 15, 0x82: 16, 0x8A: 17}  # int32/int64/double/float/bool_list_val, wire 2


def _packed_list(raw: bytes) -> np.ndarray | None:
    """float32 array of a Value holding one packed list and nothing else; None when the shape is anything else."""
    number, pos = LIST_TAGS[raw[0]], 1
    if number >= 16:  # a two-byte tag: 0x82 0x01, 0x8A 0x01
        if raw[1] != 0x01:
            return None
        pos = 2
    size, pos = (raw[pos], pos + 1) if raw[pos] < 0x80 else read_varint(raw, pos)
    if pos + size != len(raw):
        return None
    if size == 0:
        return np.zeros(0, dtype=np.float32)
    if raw[pos] != 0x0A:  # field 1, packed
        return None
    pos += 1
    if pos >= len(raw):
        return None
    length, start = (raw[pos], pos + 1) if raw[pos] < 0x80 else read_varint(raw, pos)
    if start + length != len(raw):
        return None
    kind, payload = _LISTS[number], raw[start:]
    if kind == "float":
        if length % 4:
            raise DecodeError("packed floats of a length that is not a multiple of 4")
        return np.frombuffer(payload, dtype="<f4")  # read-only view: safe to share through the cache
    if kind == "double":
        if length % 8:
            raise DecodeError("packed doubles of a length that is not a multiple of 8")
        return np.frombuffer(payload, dtype="<f8").astype(np.float32)
    if max(payload) < 0x80:  # every varint one byte (0..127, and bools, which are 0 or 1): no Python loop
        return np.frombuffer(payload, dtype=np.uint8).astype(np.float32)
    return None  # larger or negative ints: the general walk


def decode_value(raw: bytes) -> float | np.ndarray | None:
    """A Value proto as a number or a float32 array; None when it holds no value (empty message, null_val)."""
    n = len(raw)
    if n == 5 and raw[0] == 0x35:  # float_val alone, the common case, without the general walk
        return float(_F32.unpack_from(raw, 1)[0])
    if n == 9 and raw[0] == 0x29:  # double_val alone
        return float(_F64.unpack_from(raw, 1)[0])
    if n == 2 and raw[0] in (0x18, 0x20, 0x38) and raw[1] < 0x80:  # a small int32/int64 (0..127) or a bool
        return float(raw[1] != 0) if raw[0] == 0x38 else float(raw[1])
    if n and raw[0] in (0x18, 0x20):  # int32_val / int64_val alone
        whole, end = read_varint(raw, 1)
        if end == n:
            return float(_int32(whole)) if raw[0] == 0x18 else float(_signed(whole))
    if n > 2 and raw[0] in LIST_TAGS:  # a list alone, packed (what Feast writes): no general walk
        packed = _packed_list(raw)
        if packed is not None:
            return packed
    found: float | np.ndarray | None = None
    for number, wire, value in proto_fields(raw):  # a oneof: the last field wins, as in protobuf
        if number in _SCALARS:
            found = _scalar(number, wire, value)
        elif number in _LISTS:
            if not isinstance(value, bytes):
                raise DecodeError("a list value that is not length-delimited")
            found = _list(number, value)
        elif number == 19:
            found = None
        elif number in _NOT_NUMBERS:
            raise DecodeError(f"a {_NOT_NUMBERS[number]} value is not a number")
        else:
            raise DecodeError(f"Value field {number} (maps, sets, json, struct, ...) is not a number or a list")
    return found


def to_feature(spec: FeatureSpec, raw: bytes) -> FeatureValue | None:
    """The value of a stored Feast Value per the input's spec; None when Feast holds no value."""
    value = decode_value(raw)
    if value is None:
        return None
    if spec.dtype == "float":
        if isinstance(value, np.ndarray):
            raise DecodeError(f"a list of {len(value)} for a float input")
        return value
    if not isinstance(value, np.ndarray):
        raise DecodeError(f"one number for a {spec.dtype} input")
    if spec.dtype == "float_vector":
        if len(value) != spec.dim:
            raise DecodeError(f"float_vector of dim {spec.dim} found {len(value)} values")
        return value
    out = np.zeros(spec.dim, dtype=np.float32)  # int_list: truncated or zero-padded, as in codec.decode
    ints = value[: spec.dim]
    out[: len(ints)] = ints
    return out
