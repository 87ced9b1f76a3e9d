"""Checks shared by the Feast column tests (test_feast_columns.py, test_feast_compat.py): a column decoded in bulk
(feast_columns.decode_column) equals the one-by-one reader (feast_codec.to_feature), value by value."""

from __future__ import annotations

from typing import Any

import numpy as np

from sibyl.features.codec import DecodeError
from sibyl.features.feast_codec import to_feature
from sibyl.features.feast_columns import decode_column
from sibyl.models.manifest import FeatureSpec


def one_by_one(spec: FeatureSpec, raw: bytes) -> Any:
    try:
        return to_feature(spec, raw)
    except DecodeError as exc:
        return exc


def assert_same(got: Any, expected: Any) -> None:
    if isinstance(expected, DecodeError):
        assert isinstance(got, DecodeError) and str(got) == str(expected)
    elif isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    elif expected is None:
        assert got is None
    else:
        assert type(got) is float and (got == expected or (got != got and expected != expected))


def assert_column(spec: FeatureSpec, raws: list[bytes]) -> None:
    got, errors = decode_column(spec, raws)
    assert len(got) == len(raws)
    for k, (value, raw) in enumerate(zip(got, raws, strict=True)):
        expected = one_by_one(spec, raw)
        if isinstance(expected, DecodeError):  # unreadable: None in its place, why under its position
            assert value is None and k in errors
            assert_same(errors[k], expected)
        else:
            assert k not in errors
            assert_same(value, expected)
