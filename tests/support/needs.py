"""What a test does when a server binary is missing: fail in CI (CI=true), skip elsewhere, with the hint."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import pytest

from tests.support.servers import (
    DurableKafkaBroker,
    KafkaBroker,
    MissingBinaryError,
    PrometheusServer,
    RedisCluster,
    RedisServer,
    S3Server,
)

T = TypeVar("T", RedisServer, RedisCluster, KafkaBroker, DurableKafkaBroker, S3Server, PrometheusServer)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(exc: MissingBinaryError) -> NoReturn:
    if in_ci():
        pytest.fail(str(exc), pytrace=False)
    pytest.skip(str(exc))


def launch(factory: Callable[[], T], finish: Callable[[T], object] | None = None) -> Iterator[T]:
    """A fixture body: start a real server (missing binary: fail in CI, skip elsewhere), close it afterwards
    (after `finish(server)` if given, e.g. a kill for a server whose data is not needed any more)."""
    try:
        server = factory()
    except MissingBinaryError as exc:
        missing(exc)
    try:
        yield server.start()
    finally:
        if finish is not None:
            finish(server)
        server.close()
