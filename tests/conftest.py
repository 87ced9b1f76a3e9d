"""Shared fixtures: real Redis / Redis Cluster / Kafka-protocol broker / S3 servers on free loopback ports.

A missing server binary fails the test in CI (CI=true) and skips it elsewhere, with the install hint.
A test that stops or kills a session server must `start()` it again before it ends (same port).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from needs import launch

from tests.support.servers import KafkaBroker, RedisCluster, RedisServer, S3Server


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
