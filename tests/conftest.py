"""Shared fixtures: real Redis / Redis Cluster / Kafka-protocol broker / S3 servers on free loopback ports, AWS
credentials for the local S3 server, and the test model store.

A missing server binary fails the test in CI (CI=true) and skips it elsewhere, with the install hint.
A test that stops or kills a session server must `start()` it again before it ends (same port).
Each folder's own conftest.py holds the fixtures only its tests use.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import CONSUMERS, STORES, publish_models, write_features
from tests.support.needs import launch
from tests.support.servers import DurableKafkaBroker, KafkaBroker, RedisCluster, RedisServer, S3Server, make_bucket


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from launch(RedisServer)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    yield from launch(RedisCluster)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """In-memory storage: topics are gone after a restart."""
    yield from launch(KafkaBroker)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Buckets persist across tests (and restarts): use unique bucket names."""
    yield from launch(S3Server)


@pytest.fixture
def durable_broker(s3_server: S3Server) -> Iterator[DurableKafkaBroker]:
    """A tansu broker of its own, stored in a new bucket of the session S3 server: survives kill + start."""
    s3_server.start()
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    make_bucket(s3_server.endpoint_url, bucket)
    yield from launch(lambda: DurableKafkaBroker(s3_server.endpoint_url, bucket), finish=DurableKafkaBroker.kill)


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The session Redis, running and emptied (FLUSHALL) for this test."""
    import redis

    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials boto3 needs to talk to the local S3 server (any values do)."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """make_store(entities=None) -> tmp_path, holding the test models in store/ (publish_models: predictor p,
    primary m@1, shadow s@1 at sample 1.0) and the entity features in features.jsonl (None: CONSUMERS + STORES).
    Serve it with running_server(tmp_path, features=features_on(tmp_path))."""

    def make(entities: list[dict[str, Any]] | None = None) -> Path:
        publish_models(tmp_path / "store")
        write_features(tmp_path / "features.jsonl", CONSUMERS + STORES if entities is None else entities)
        return tmp_path

    return make


@pytest.fixture
def store(make_store: Callable[..., Path]) -> Path:
    """make_store() with the default features: tmp_path with store/ and features.jsonl."""
    return make_store()
