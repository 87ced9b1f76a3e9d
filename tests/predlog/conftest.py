"""Fixtures of the prediction-log tests."""

from __future__ import annotations

import uuid

import pytest

from tests.support.servers import KafkaBroker, create_topic


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> str:
    """A new topic on the session broker (started if a test stopped it)."""
    kafka_broker.start()
    name = f"predlog-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker.bootstrap, name)
    return name
