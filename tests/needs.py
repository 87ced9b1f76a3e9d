"""What a test does when a server binary is missing: fail in CI (CI=true), skip elsewhere, with the hint."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from sibyl.testing.servers import MissingBinaryError


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(exc: MissingBinaryError) -> NoReturn:
    if in_ci():
        pytest.fail(str(exc), pytrace=False)
    pytest.skip(str(exc))
