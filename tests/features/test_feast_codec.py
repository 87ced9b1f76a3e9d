"""Feast's wire format without Feast: known murmur3 values, keys as feast 0.67 wrote them (copied from a real
materialization, see test_feast_compat.py for the live check), Value protos by hand, and the mapping settings."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sibyl.features.codec import DecodeError
from sibyl.features.feast_codec import decode_value, entity_key, field, murmur3_32, timestamp_s, to_feature
from sibyl.features.feast_redis import FeastSettings
from sibyl.models.manifest import FeatureSpec


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0), (b"hello", 0x248BFA47), (b"The quick brown fox jumps over the lazy dog", 0x2E4FF723)],
)
def test_murmur3_matches_the_reference(data: bytes, expected: int) -> None:
    assert murmur3_32(data) == expected


def test_keys_and_fields_as_feast_wrote_them() -> None:
    v3 = b"\x01\x00\x00\x00\x02\x00\x00\x00\t\x00\x00\x00driver_id\x04\x00\x00\x00\x08\x00\x00\x00\xe9\x03" + bytes(6)
    assert entity_key("driver_id", "int64", "1001", "p3", 3) == v3 + b"p3"
    v2 = b"\x02\x00\x00\x00customer_id\x02\x00\x00\x00\x05\x00\x00\x00c4 \xc3\xa9p2"
    assert entity_key("customer_id", "string", "c4 é", "p2", 2) == v2
    assert entity_key("n", "int32", "-1", "p", 3).endswith(b"\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\xff\xffp")
    with pytest.raises(ValueError, match="not a Feast int64"):
        entity_key("driver_id", "int64", "x", "p", 3)
    with pytest.raises(ValueError, match="not a Feast int32"):
        entity_key("driver_id", "int32", str(2**31), "p", 3)
    assert field("customer_profile", "score") == b"\x04%\xe6\xe0"  # as written by feast materialize


def test_values_by_hand() -> None:
    assert decode_value(b"5" + struct.pack("<f", 0.25)) == 0.25  # float_val
    assert decode_value(b")" + struct.pack("<d", 0.1)) == 0.1  # double_val keeps its 64 bits
    assert decode_value(b"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01") == -1.0  # int32_val -1
    assert decode_value(b"\x20\x80\x80\x80\x80\x80\x20") == float(2**40)  # int64_val
    assert decode_value(b"\x38\x01") == 1.0  # bool_val
    assert decode_value(b"") is None and decode_value(b"\x98\x01\x00") is None  # empty, null_val
    floats = np.asarray([0.5, -1.0], dtype="<f4").tobytes()
    packed = b"\x0a" + bytes([len(floats)]) + floats
    np.testing.assert_array_equal(decode_value(b"\x82\x01" + bytes([len(packed)]) + packed), [0.5, -1.0])
    ints = b"\x0a\x02\x07\x09"  # Int64List packed [7, 9]
    np.testing.assert_array_equal(decode_value(b"\x72" + bytes([len(ints)]) + ints), [7.0, 9.0])
    unpacked = b"\x08\x07\x08\x09"  # the same list, unpacked
    np.testing.assert_array_equal(decode_value(b"\x72" + bytes([len(unpacked)]) + unpacked), [7.0, 9.0])
    with pytest.raises(DecodeError, match="string"):
        decode_value(b"\x12\x02ab")
    with pytest.raises(DecodeError, match="truncated"):
        decode_value(b"\x12\x09ab")
    assert timestamp_s(b"\x08\x80\xe2\xcf\xaa\x06\x10\x80\xca\xb5\xee\x01") == pytest.approx(1700000000.5)
    assert timestamp_s(b"") is None


def test_values_fit_the_input_spec() -> None:
    floats = np.asarray([1, 2, 3], dtype="<f4").tobytes()
    inner = b"\x0a" + bytes([len(floats)]) + floats
    three = b"\x82\x01" + bytes([len(inner)]) + inner
    vector = FeatureSpec(name="v", dtype="float_vector", dim=3)
    np.testing.assert_array_equal(to_feature(vector, three), [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="dim 2"):
        to_feature(FeatureSpec(name="v", dtype="float_vector", dim=2), three)
    np.testing.assert_array_equal(to_feature(FeatureSpec(name="i", dtype="int_list", dim=4), three), [1, 2, 3, 0])  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="list of 3 for a float"):
        to_feature(FeatureSpec(name="f"), three)
    with pytest.raises(DecodeError, match="one number"):
        to_feature(vector, b"5" + struct.pack("<f", 1.0))


def test_settings_mapping() -> None:
    fs = FeastSettings(
        features=["rate=driver_stats:conv_rate"], entities=["user=user_id:string", "driver_id=int32"], ttl=["v=60"]
    )
    assert fs.ref("rate") == ("driver_stats", "conv_rate")
    assert fs.ref("driver_stats__trips") == ("driver_stats", "trips")  # Feast's full feature name needs no mapping
    assert fs.ref("plain") is None
    assert fs.join("user") == ("user_id", "string") and fs.join("driver_id") == ("driver_id", "int32")
    assert fs.join("other") == ("other", "int64") and fs.ttl_s == {"v": 60.0}
    for bad in ({"features": ["rate=conv_rate"]}, {"entities": ["user=uuid"]}, {"ttl": ["v=soon"]}, {"ttl": ["v"]}):
        with pytest.raises(ValidationError):
            FeastSettings.model_validate(bad)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes_decode_or_raise_decode_error(raw: bytes) -> None:
    """A corrupt value must be "unreadable" (DecodeError: that feature missing), never another exception, which
    would fail the whole fetch."""
    for candidate in (raw, b"\x82\x01" + raw, b"\x72" + raw, b"5" + raw, b"\x20" + raw):
        with contextlib.suppress(DecodeError):
            decode_value(candidate)
        with contextlib.suppress(DecodeError):
            timestamp_s(candidate)
