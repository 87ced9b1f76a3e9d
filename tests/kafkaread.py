"""Read a whole Kafka partition back for assertions (assign + seek: tansu's consumer-group join is slow)."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from sibyl.v1.predlog_pb2 import PredictionLog


def read_topic(bootstrap: str, topic: str, at_least: int, timeout_s: float = 20.0) -> list[PredictionLog]:
    """Every record of partition 0 from the beginning (assign + seek: tansu's group join is slow)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=500,
        max_poll_records=100_000,  # tansu answers nothing to a fetch that starts mid-batch: take whole batches
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: list[PredictionLog] = []
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline and (len(out) < at_least or idle < 2):
            batch = consumer.poll(timeout_ms=300)
            idle = 0 if batch else idle + 1
            for messages in batch.values():
                for m in messages:
                    rec = PredictionLog.FromString(m.value)
                    assert m.key == rec.prediction_id.encode()
                    out.append(rec)
        return out
    finally:
        consumer.close()
