"""Fixtures of the batch-scoring tests (a Spark session per module, Redis features); the case they score and the
server's answers are in example_case.py and server_answers.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.batch.engines import requires, requires_java, worker_env
from tests.batch.example_case import load_example_features
from tests.support.redis_servers import RedisServer


@pytest.fixture
def redis_features(fresh_redis: RedisServer) -> dict[str, Any]:
    return load_example_features(fresh_redis)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    requires_java()
    requires("pyspark", "pip install 'sibyl[spark]'")
    from pyspark.sql import SparkSession

    stack = contextlib.ExitStack()
    stack.enter_context(worker_env())
    session = (
        SparkSession.builder.master("local[2]")
        .appName("sibyl-batch-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4000")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        stack.close()
