"""Feast Values decoded a feature at a time across entities (feast_columns) equal the one-by-one reader
(feast_codec.to_feature) on every kind Feast writes, on mixed and malformed columns, and through FeastLayout.decode
with absent, stale and unreadable values. test_feast_compat.py checks the same on the bytes real Feast wrote."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sibyl.features.feast_columns import BULK_MIN, decode_column
from sibyl.features.feast_redis import FeastLayout, FeastSettings
from sibyl.models.manifest import FeatureSpec
from tests.features.feast_columns_check import assert_column, assert_same

FLOAT = FeatureSpec(name="f")
VECTOR = FeatureSpec(name="v", dtype="float_vector", dim=3)
INTS = FeatureSpec(name="i", dtype="int_list", dim=4)
SPECS = [FLOAT, VECTOR, INTS, FeatureSpec(name="w", dtype="float_vector", dim=40)]


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def listed(tag: bytes, payload: bytes, packed: bool = True) -> bytes:
    inner = b"\x0a" + varint(len(payload)) + payload if packed else payload
    return tag + varint(len(inner)) + inner


SCALARS = {
    "float": lambda x: b"\x35" + struct.pack("<f", x),
    "double": lambda x: b"\x29" + struct.pack("<d", x),
    "int64": lambda x: b"\x20" + varint(int(x)),
    "int32": lambda x: b"\x18" + varint(int(x)),
    "bool": lambda x: b"\x38" + varint(int(x) & 1),
}
LISTS = {
    "float": lambda xs: listed(b"\x82\x01", struct.pack(f"<{len(xs)}f", *xs)),
    "double": lambda xs: listed(b"\x7a", struct.pack(f"<{len(xs)}d", *xs)),
    "int64": lambda xs: listed(b"\x72", b"".join(varint(int(x)) for x in xs)),
    "int32": lambda xs: listed(b"\x6a", b"".join(varint(int(x)) for x in xs)),
    "bool": lambda xs: listed(b"\x8a\x01", b"".join(varint(int(x) & 1) for x in xs)),
}


def test_every_kind_feast_writes() -> None:
    numbers = [0, 1, -1, 127, 128, -(2**31), 2**31 - 1, 2**40, -(2**40), 2**63 - 1, -(2**63), 300, 5]
    for encode in SCALARS.values():
        for spec in SPECS:
            assert_column(spec, [encode(x) for x in numbers] * 2)  # mixed lengths (varints), then one length each
            for x in numbers:
                assert_column(spec, [encode(x)] * BULK_MIN)
    for kind, encode in LISTS.items():
        pool = [0.25, -1e30, 3.5, 0.0] if kind in ("float", "double") else numbers
        for size in (1, 2, 3, 4, 40):
            small = [encode([(r + k) % 7 for k in range(size)]) for r in range(BULK_MIN * 2)]
            large = [encode([pool[(r + k) % len(pool)] for k in range(size)]) for r in range(BULK_MIN)]
            for spec in SPECS:
                assert_column(spec, small)
                assert_column(spec, large)


def test_rows_of_a_block_are_read_only_views() -> None:
    values, errors = decode_column(VECTOR, [LISTS["float"]([r, 2.0, 3.0]) for r in range(BULK_MIN)])
    assert errors == {}
    assert all(isinstance(v, np.ndarray) and not v.flags.writeable for v in values)
    assert values[3].tolist() == [3.0, 2.0, 3.0]


def test_shapes_it_does_not_read_in_bulk_go_one_by_one() -> None:
    unpacked = listed(b"\x72", b"\x08\x07\x08\x09", packed=False)
    null, empty_list, text = b"\x98\x01\x00", b"\x72\x00", b"\x12\x02ab"
    two_fields = b"\x35" + struct.pack("<f", 1.0) + b"\x20\x01"  # a oneof: the last field wins
    for spec in SPECS:
        for odd in (unpacked, null, empty_list, text, two_fields, b"\x20\x80", b"\x35\x00"):
            assert_column(spec, [odd] * BULK_MIN)
            assert_column(spec, [SCALARS["float"](1.5)] * BULK_MIN + [odd] + [LISTS["float"]([1, 2, 3])] * BULK_MIN)


value_kinds = st.sampled_from([*(("s", k) for k in SCALARS), *(("l", k) for k in LISTS)])


@st.composite
def columns(draw: st.DrawFn) -> list[bytes]:
    """Mostly one kind and size, as Feast writes a feature; now and then another kind or random bytes."""
    mark, kind = draw(value_kinds)
    size = draw(st.integers(1, 6))
    numbers = st.integers(-(2**63), 2**63 - 1) if draw(st.booleans()) else st.integers(0, 127)
    raws = []
    for _ in range(draw(st.integers(BULK_MIN, 3 * BULK_MIN))):
        pick = draw(st.integers(0, 20))
        if pick == 0:
            raws.append(draw(st.binary(max_size=12)))
        elif pick == 1:
            other_mark, other = draw(value_kinds)
            raws.append(SCALARS[other](1) if other_mark == "s" else LISTS[other]([1] * size))
        elif mark == "s":
            x = draw(numbers)
            raws.append(SCALARS[kind](float(x) if kind in ("float", "double") else x))
        else:
            xs = draw(st.lists(numbers, min_size=size, max_size=size))
            raws.append(LISTS[kind]([float(x) for x in xs] if kind in ("float", "double") else xs))
    return raws


@settings(max_examples=300, deadline=None)
@given(columns(), st.sampled_from(SPECS))
def test_random_columns_decode_as_one_by_one(raws: list[bytes], spec: FeatureSpec) -> None:
    assert_column(spec, raws)


@pytest.mark.parametrize("entities", [1, BULK_MIN - 1, 3 * BULK_MIN])
def test_layout_decode_with_absent_stale_and_unreadable_values(entities: int) -> None:
    """Entities through FeastLayout.decode equal a per-entity, per-value reading of the same replies: a few
    (value by value) and many (each feature's column at once)."""
    now = 1_700_000_000.0
    fs = FeastSettings(project="p", features=["a=v:a", "b=v:b", "c=w:c"], ttl=["v=60"])
    errors: list[tuple[Any, str]] = []
    stale: dict[str, int] = {}
    layout = FeastLayout(fs, lambda key, name, reason: errors.append((key, name)), clock=lambda: now)
    layout.on_stale = lambda view, count: stale.update({view: stale.get(view, 0) + count})
    specs = [FeatureSpec(name="a", entity="d"), VECTOR.model_copy(update={"name": "b", "entity": "d"}),
             FeatureSpec(name="c", entity="d")]  # fmt: skip
    wanted = {("d", str(i)): specs for i in range(entities)}
    reads = layout.plan_reads(wanted)
    fresh, old = b"\x08" + varint(int(now) - 10), b"\x08" + varint(int(now) - 600)
    replies: list[Any] = []
    for i in range(len(reads)):
        a = None if i % 5 == 0 else SCALARS["double"](i / 3)
        b = b"\x12\x02ab" if i % 7 == 0 else LISTS["float"]([i, 1.0, 2.0])
        replies.append([a, b, SCALARS["int64"](i - 10), old if i % 4 == 0 else fresh])
    out = layout.decode(reads, replies, wanted)
    expected_stale = 0
    for i, (key, _, _) in enumerate(reads):
        values = out.get(key, {})
        if i % 4 == 0:
            expected_stale += (i % 5 != 0) + 1  # view v: a (when present) and b
            assert set(values) == {"c"}
        else:
            assert (values.get("a") is None) == (i % 5 == 0) and (values.get("b") is None) == (i % 7 == 0)
            assert_same(values.get("a"), None if i % 5 == 0 else i / 3)
        assert values["c"] == float(i - 10)
    assert stale == {"v": expected_stale}
    assert sorted(errors) == sorted((key, "b") for i, (key, _, _) in enumerate(reads) if i % 7 == 0 and i % 4)
