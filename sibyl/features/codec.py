"""The Redis layout and value encoding, shared by the reader, the writer and `sibyl features get`.

Key:   <prefix>:{<entity>:<id>}   one hash per entity; the {...} hash tag keeps it on one cluster node.
Field: xxh32(name) as 4 raw bytes (big-endian digest, seed 0) | xxh64(name) as 8 raw bytes | the name (utf-8).
Value: float        -> 4 bytes, little-endian float32
       float_vector -> 4 * dim bytes, little-endian float32
       int_list     -> 4 * n bytes, little-endian int32 (read back truncated / zero-padded to dim)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import xxhash

from sibyl.features.base import FeatureValue
from sibyl.models.manifest import FeatureSpec

FieldHash = Literal["xxh32", "xxh64", "name"]
Dtype = Literal["float", "float_vector", "int_list"]
F32 = struct.Struct("<f")
_INT32 = (-(2**31), 2**31 - 1)


class DecodeError(ValueError):
    """A stored value does not fit its spec; the caller treats the feature as missing."""


class EncodeError(ValueError):
    """A value given to the writer cannot be stored as its dtype; the message says why.

    `index` is the position of the offending row in the batch given to the writer (None outside one).
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def entity_key(prefix: str, entity: str, entity_id: str) -> str:
    return f"{prefix}:{{{entity}:{entity_id}}}"


@lru_cache(maxsize=65_536)
def field_name(name: str, scheme: FieldHash) -> bytes:
    if scheme == "xxh32":
        return xxhash.xxh32_digest(name.encode())
    if scheme == "xxh64":
        return xxhash.xxh64_digest(name.encode())
    return name.encode()


def check_collisions(names: Sequence[str], scheme: FieldHash) -> None:
    """Two feature names with the same hashed field would overwrite each other: refuse."""
    seen: dict[bytes, str] = {}
    for name in names:
        other = seen.setdefault(field_name(name, scheme), name)
        if other != name:
            raise EncodeError(f"features {other!r} and {name!r} hash to the same {scheme} field; rename one")


# ---- encoding (writer)
def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise EncodeError(f"{value!r} is not a number")
    return float(value)


def infer_dtype(value: Any) -> Dtype:
    return "float_vector" if isinstance(value, list | tuple | np.ndarray) else "float"


def encode(value: Any, dtype: Dtype | None = None, dim: int | None = None) -> bytes:
    """Bytes for one value; dtype defaults from the value's shape (scalar -> float, list -> float_vector)."""
    dtype = dtype or infer_dtype(value)
    if dtype == "float":
        if isinstance(value, list | tuple | np.ndarray):
            raise EncodeError(f"expected one number, got a list of {len(value)}")
        return F32.pack(_number(value))
    if not isinstance(value, list | tuple | np.ndarray):
        raise EncodeError(f"{dtype} expects a list of numbers, got {value!r}")
    items = [_number(v) for v in value]
    if dtype == "float_vector":
        if dim is not None and len(items) != dim:
            raise EncodeError(f"float_vector of dim {dim} got {len(items)} values")
        return np.asarray(items, dtype="<f4").tobytes()
    for v in items:
        if not v.is_integer() or not _INT32[0] <= v <= _INT32[1]:
            raise EncodeError(f"int_list value {v!r} is not a 32-bit integer")
    return np.asarray(items, dtype="<i4").tobytes()


# ---- decoding (reader)
def decode(spec: FeatureSpec, raw: bytes) -> FeatureValue:
    """The value of a stored field per its spec; raises DecodeError when the bytes do not fit."""
    n = len(raw)
    if spec.dtype == "float":
        if n != 4:
            raise DecodeError(f"float needs 4 bytes, found {n}")
        value: float = F32.unpack(raw)[0]
        return value
    if n % 4:
        raise DecodeError(f"{spec.dtype} needs a multiple of 4 bytes, found {n}")
    if spec.dtype == "float_vector":
        if n != 4 * spec.dim:
            raise DecodeError(f"float_vector of dim {spec.dim} needs {4 * spec.dim} bytes, found {n}")
        return np.frombuffer(raw, dtype="<f4")  # read-only view: safe to share through the cache
    ints = np.frombuffer(raw, dtype="<i4")[: spec.dim]
    out = np.zeros(spec.dim, dtype=np.float32)
    out[: len(ints)] = ints
    return out


def decode_json(spec: FeatureSpec, value: Any) -> FeatureValue:
    """The same rules for values held as JSON (the memory backend)."""
    try:
        if spec.dtype == "float":
            if isinstance(value, list):
                raise DecodeError(f"float expects a number, found a list of {len(value)}")
            return _number(value)
        if not isinstance(value, list):
            raise DecodeError(f"{spec.dtype} expects a list, found {value!r}")
        items = [_number(v) for v in value]
    except EncodeError as exc:
        raise DecodeError(str(exc)) from None
    if spec.dtype == "float_vector":
        if len(items) != spec.dim:
            raise DecodeError(f"float_vector of dim {spec.dim} found {len(items)} values")
        return np.asarray(items, dtype=np.float32)
    if any(not math.isfinite(v) or not v.is_integer() for v in items):
        raise DecodeError("int_list holds a non-integer")
    out = np.zeros(spec.dim, dtype=np.float32)
    ints = items[: spec.dim]
    out[: len(ints)] = ints
    return out


def describe(raw: bytes) -> str:
    """A guess at a raw value for humans (when no spec says what it is)."""
    if len(raw) == 4:
        return f"{F32.unpack(raw)[0]:.7g} (float32; as int32: {int.from_bytes(raw, 'little', signed=True)})"
    if len(raw) % 4 == 0 and raw:
        return f"{[float(f'{v:.7g}') for v in np.frombuffer(raw, '<f4').tolist()]} (float32 x {len(raw) // 4})"
    return f"{raw!r} ({len(raw)} bytes: not a float32 encoding)"
