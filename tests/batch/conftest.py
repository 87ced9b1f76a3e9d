"""Fixtures of the batch-scoring tests; the case they score and the server's answers are in example_case.py and
server_answers.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.batch.example_case import load_example_features
from tests.support.redis_servers import RedisServer


@pytest.fixture
def redis_features(fresh_redis: RedisServer) -> dict[str, Any]:
    return load_example_features(fresh_redis)
