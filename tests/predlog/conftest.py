"""Fixtures of the prediction-log tests."""

from __future__ import annotations

import uuid

import pytest

from sibyl.predlog.producers import CLIENTS
from tests.support.servers import KafkaBroker, create_topic


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """Each Kafka sink test runs with both producers (predlog.kafka_client)."""
    return str(request.param)


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> str:
    """A new topic on the session broker (started if a test stopped it)."""
    kafka_broker.start()
    name = f"predlog-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker.bootstrap, name)
    return name
