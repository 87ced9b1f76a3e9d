"""Kafka sink test helpers: read a whole partition back for assertions (assign + seek: tansu's consumer-group
join is slow), count a sink's outcomes, wait for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from sibyl.observability.metrics import Metrics
from sibyl.predlog.tail import MAX_FRAME_BYTES
from sibyl.v1.predlog_pb2 import PredictionLog


def read_topic(bootstrap: str, topic: str, at_least: int, timeout_s: float = 20.0) -> list[PredictionLog]:
    """Every prediction record of partition 0 from the beginning, each keyed by its prediction_id."""
    out: list[PredictionLog] = []
    for m in read_messages(bootstrap, topic, at_least, timeout_s):
        rec = PredictionLog.FromString(m.value)
        assert m.key == rec.prediction_id.encode()
        out.append(rec)
    return out


def read_messages(bootstrap: str, topic: str, at_least: int, timeout_s: float = 20.0) -> list[Any]:
    """Every message (kafka-python's ConsumerRecord: key, value) of partition 0 from the beginning, until at
    least `at_least` came and two polls came back empty (assign + seek: tansu's group join is slow)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=500,
        max_poll_records=100_000,  # tansu answers nothing to a fetch that starts mid-batch: take whole batches
        receive_message_max_bytes=MAX_FRAME_BYTES,
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline and (len(out) < at_least or idle < 2):
            batch = consumer.poll(timeout_ms=300)
            idle = 0 if batch else idle + 1
            for messages in batch.values():
                out.extend(messages)
        return out
    finally:
        consumer.close()


def count(metrics: Metrics, outcome: str) -> float:
    return metrics.predlog_records.labels(outcome)._value.get()


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def ids_in_topic(bootstrap: str, topic: str, role: int | None = None, limit_s: float = 30.0) -> set[str]:
    """prediction_ids of every record in `topic` up to its end offsets at the time of the call (all partitions),
    only those of `role` if given (e.g. Role.ROLE_PRIMARY)."""
    # A poll that returns part of a fetched batch leaves the next fetch mid-batch, where tansu answers nothing:
    # take whole batches (max_poll_records far above any batch).
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_poll_records=1_000_000,
        receive_message_max_bytes=MAX_FRAME_BYTES,
    )
    ids: set[str] = set()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        deadline, empty = time.monotonic() + limit_s, 0
        # tansu on S3 storage can report a stale end offset: go on until two empty polls past the end we see now
        # (offsets may have gaps: 3 s of nothing is the end either way)
        for _ in range(100_000):  # bounded by the deadline in practice
            ends = consumer.end_offsets(partitions)
            at_end = all(consumer.position(tp) >= end for tp, end in ends.items())
            if (at_end and empty >= 2) or empty >= 6:
                break
            assert time.monotonic() < deadline, f"could not read {topic} to its end within {limit_s} s"
            batches = consumer.poll(timeout_ms=500)
            empty = 0 if batches else empty + 1
            for messages in batches.values():
                for message in messages:
                    record = PredictionLog.FromString(message.value)
                    if role is None or record.role == role:
                        ids.add(record.prediction_id)
    finally:
        consumer.close()
    return ids
