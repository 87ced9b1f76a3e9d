"""One Feast feature's stored Values across many entities, decoded at once (feast_redis.FeastLayout.decode).

Feast writes every entity's value of a feature in the same wire shape: a float_val is always the 5 bytes
`0x35 <f32>`, a double_val `0x29 <f64>`, a small int64 a tag and a one-byte varint, a list of d floats one header
and 4d bytes. Values of one length that share their header bytes are read as one byte matrix (numpy): one
frombuffer, one check of the headers, one conversion, instead of one protobuf walk per value
(docs/features.md#feast-values has the figures). Any value whose shape is not one of those goes through
feast_codec.to_feature alone; the results are the same either way (tests/features/test_feast_columns.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sibyl.features.base import FeatureValue
from sibyl.features.codec import DecodeError
from sibyl.features.feast_codec import LIST_TAGS, read_varint, to_feature
from sibyl.models.manifest import FeatureSpec

Decoded = FeatureValue | None  # None: Feast holds no value (or, with an entry in the errors, an unreadable one)
BULK_MIN = 8  # fewer values than this: one at a time is cheaper than numpy's fixed cost per call
_VARINT_TAGS = {0x18: "int32", 0x20: "int64", 0x38: "bool"}
_LIST_KINDS = {0x6A: "int", 0x72: "int", 0x7A: "double", 0x82: "float", 0x8A: "int"}  # int: int32, int64, bool


def decode_column(spec: FeatureSpec, raws: Sequence[bytes]) -> tuple[list[FeatureValue | None], dict[int, DecodeError]]:
    """Each raw Value as `to_feature(spec, raw)` gives it (None: Feast holds no value), and why each value it
    rejects is unreadable, by position (that value is None)."""
    errors: dict[int, DecodeError] = {}
    if len(raws) < BULK_MIN:
        return _one_by_one(spec, raws, range(len(raws)), errors), errors
    lengths = list(map(len, raws))
    if lengths.count(lengths[0]) == len(raws):  # the usual case: every value of one length
        block = _block(spec, raws, lengths[0])
        return (block if block is not None else _one_by_one(spec, raws, range(len(raws)), errors)), errors
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        by_length.setdefault(length, []).append(i)
    out: list[FeatureValue | None] = [None] * len(raws)
    for length, where in by_length.items():
        part = [raws[i] for i in where]
        block = _block(spec, part, length) if len(part) >= BULK_MIN else None
        for i, value in zip(where, block if block is not None else _one_by_one(spec, part, where, errors), strict=True):
            out[i] = value
    return out, errors


def _one_by_one(
    spec: FeatureSpec, raws: Sequence[bytes], where: Sequence[int], errors: dict[int, DecodeError]
) -> list[FeatureValue | None]:
    """to_feature per value; a rejected value is None, its DecodeError in errors under its position (`where`)."""
    out: list[FeatureValue | None] = []
    for i, raw in zip(where, raws, strict=True):
        try:
            out.append(to_feature(spec, raw))
        except DecodeError as exc:
            errors[i] = exc
            out.append(None)
    return out


def _block(spec: FeatureSpec, raws: Sequence[bytes], length: int) -> list[Decoded] | None:
    """The values of `raws` (all `length` bytes) read as one matrix; None when they are not all of one shape
    this reads (the caller then decodes them one by one)."""
    if length < 2:
        return None
    first = raws[0]
    tag = first[0]
    if tag == 0x35 or tag == 0x29 or tag in _VARINT_TAGS:
        if spec.dtype != "float":
            return None  # one number for a vector input: to_feature says why, per value
        matrix = np.frombuffer(b"".join(raws), np.uint8).reshape(len(raws), length)
        if not (matrix[:, 0] == tag).all():
            return None
        if tag == 0x35:
            return None if length != 5 else _floats(np.ascontiguousarray(matrix[:, 1:]).view("<f4")[:, 0])
        if tag == 0x29:
            return None if length != 9 else _floats(np.ascontiguousarray(matrix[:, 1:]).view("<f8")[:, 0])
        return _varints(matrix[:, 1:], _VARINT_TAGS[tag])
    if tag in LIST_TAGS:
        return _lists(spec, raws, length)
    return None


def _varints(body: np.ndarray, kind: str) -> list[Decoded] | None:
    """One varint per row, every row of the same byte count: int32/int64/bool values as floats."""
    width = body.shape[1]
    if width > 10 or (body[:, -1] >= 0x80).any() or (body[:, :-1] < 0x80).any():
        return None  # not one whole varint per row (another field follows, or it is malformed)
    if width == 10 and (body[:, -1] > 1).any():
        return None  # beyond 64 bits: the one-by-one reader keeps what protobuf would make of it
    whole = np.zeros(len(body), np.uint64)
    for k in range(width):
        whole |= (body[:, k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    if kind == "bool":
        return _floats(whole != 0)
    if kind == "int32":  # two's complement over 64 bits, then the low 32 bits as signed
        return _floats(whole.astype(np.uint32).view(np.int32))
    return _floats(whole.view(np.int64))


def _floats(column: np.ndarray) -> list[Decoded]:
    """Python floats, as the one-by-one reader gives them (float32 widened exactly, ints and bools as floats)."""
    values: list[Decoded] = column.astype(np.float64).tolist()
    return values


def _lists(spec: FeatureSpec, raws: Sequence[bytes], length: int) -> list[Decoded] | None:
    """Values holding one packed list each, with the same header bytes (so the same element count)."""
    first = raws[0]
    pos = 1
    if first[0] >= 0x82:  # a two-byte tag: 0x82 0x01, 0x8A 0x01
        if first[1] != 0x01:
            return None
        pos = 2
    try:
        size, pos = read_varint(first, pos)
        if pos + size != length or pos >= length or first[pos] != 0x0A:
            return None
        count, start = read_varint(first, pos + 1)
    except DecodeError:
        return None
    if start + count != length or count == 0:
        return None
    matrix = np.frombuffer(b"".join(raws), np.uint8).reshape(len(raws), length)
    if not (matrix[:, :start] == matrix[0, :start]).all():
        return None
    payload = np.ascontiguousarray(matrix[:, start:])
    kind = _LIST_KINDS[first[0]]
    if kind == "float":
        if count % 4:
            return None
        values = payload.view("<f4")
    elif kind == "double":
        if count % 8:
            return None
        values = payload.view("<f8").astype(np.float32)
    elif payload.max() < 0x80:  # every varint one byte (0..127, and bools): as feast_codec's packed fast path
        values = payload.astype(np.float32)
    else:
        return None  # larger or negative ints: the general walk, one by one
    items = values.shape[1]
    if spec.dtype == "float_vector":
        if items != spec.dim:
            return None
    elif spec.dtype == "int_list":  # truncated or zero-padded, as to_feature
        padded = np.zeros((len(values), spec.dim), np.float32)
        padded[:, : min(items, spec.dim)] = values[:, : spec.dim]
        values = padded
    else:
        return None  # a list for a float input: to_feature says why, per value
    values.flags.writeable = False  # the rows are views of one block, shared through the cache: read-only
    return list(values)
