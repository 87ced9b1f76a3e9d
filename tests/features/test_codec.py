import numpy as np
import pytest
import xxhash

from sibyl.features.codec import (
    DecodeError,
    EncodeError,
    check_collisions,
    decode,
    decode_json,
    encode,
    entity_key,
    field_name,
)
from sibyl.models.manifest import FeatureSpec

F = FeatureSpec(name="f", entity="e")
VEC = FeatureSpec(name="v", entity="e", dtype="float_vector", dim=3, default=(0.0, 0.0, 0.0))
INTS = FeatureSpec(name="i", entity="e", dtype="int_list", dim=4, default=(0.0,) * 4)


def test_key_uses_a_hash_tag_per_entity() -> None:
    assert entity_key("sibyl:v1", "consumer_id", "42") == "sibyl:v1:{consumer_id:42}"


def test_field_schemes() -> None:
    assert field_name("consumer_emb", "xxh32") == xxhash.xxh32_digest(b"consumer_emb")
    assert len(field_name("consumer_emb", "xxh32")) == 4
    assert len(field_name("consumer_emb", "xxh64")) == 8
    assert field_name("consumer_emb", "name") == b"consumer_emb"


def test_float_and_vector_round_trip_as_little_endian_float32() -> None:
    assert encode(1.5) == b"\x00\x00\xc0\x3f"
    assert decode(F, encode(1.5)) == 1.5
    raw = encode([0.5, -1.0, 2.0], "float_vector", 3)
    assert raw == np.array([0.5, -1.0, 2.0], "<f4").tobytes()
    assert decode(VEC, raw).tolist() == [0.5, -1.0, 2.0]


def test_int_list_is_int32_truncated_or_zero_padded_to_dim() -> None:
    raw = encode([7, 8], "int_list")
    assert raw == np.array([7, 8], "<i4").tobytes()
    out = decode(INTS, raw)
    assert out.dtype == np.float32 and out.tolist() == [7, 8, 0, 0]
    assert decode(INTS, encode([1, 2, 3, 4, 5, 6], "int_list")).tolist() == [1, 2, 3, 4]
    assert decode(INTS, b"").tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("spec", "raw"),
    [(F, b"abc"), (F, encode([1.0, 2.0])), (VEC, encode([1.0, 2.0])), (INTS, b"12345"), (VEC, b"hello")],
)
def test_values_that_do_not_fit_the_spec_are_decode_errors(spec: FeatureSpec, raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(spec, raw)


@pytest.mark.parametrize(
    ("value", "dtype", "dim"),
    [
        ("x", None, None),
        ([1.0, "a"], None, None),
        ([1.5], "int_list", None),
        ([1.0], "float_vector", 2),
        (True, None, None),
    ],
)
def test_encode_refuses_bad_values(value: object, dtype: str | None, dim: int | None) -> None:
    with pytest.raises(EncodeError):
        encode(value, dtype, dim)  # type: ignore[arg-type]


def test_json_values_follow_the_same_rules() -> None:
    assert decode_json(F, 2) == 2.0
    assert decode_json(VEC, [1, 2, 3]).tolist() == [1, 2, 3]
    assert decode_json(INTS, [1, 2]).tolist() == [1, 2, 0, 0]
    for spec, bad in [(F, [1.0]), (F, "x"), (VEC, [1, 2]), (INTS, [1.5]), (VEC, 3.0)]:
        with pytest.raises(DecodeError):
            decode_json(spec, bad)


def _xxh32_collision() -> tuple[str, str]:
    seen: dict[bytes, str] = {}
    for i in range(300_000):  # birthday bound: a 32-bit collision is expected after ~77k names
        name = f"f{i}"
        other = seen.setdefault(xxhash.xxh32_digest(name.encode()), name)
        if other != name:
            return other, name
    raise AssertionError("no collision found")


def test_colliding_fields_are_refused() -> None:
    a, b = _xxh32_collision()
    check_collisions(["x", "y", a], "xxh32")
    check_collisions([a, b], "xxh64")
    with pytest.raises(EncodeError, match="same xxh32 field"):
        check_collisions(["x", a, b], "xxh32")
