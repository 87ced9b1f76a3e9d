"""The producer adapters (predlog/producers.py) against a real tansu broker: the same contract for both clients,
a close that never waits and never leaves an I/O thread running, no flush from the garbage collector, and a
typed error when the optional client is not installed."""

from __future__ import annotations

import gc
import os
import queue
import signal
import sys
import threading
import time
import zlib

import pytest

from sibyl.errors import MissingDependency
from sibyl.predlog.producers import (
    KafkaPythonProducer,
    ProducerConfig,
    ProducerUnavailable,
    RecordRejected,
    Results,
    producer_factory,
)
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.kafkaread import read_topic
from tests.support.servers import KafkaBroker, create_topic, free_port


def outcomes(results: Results, n: int, timeout_s: float = 10.0, poll: object = None) -> dict[int, object]:
    got: dict[int, object] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        if poll is not None:
            poll(0.05)  # type: ignore[operator]
        try:
            token, exc = results.get(timeout=0.05)
        except queue.Empty:
            continue
        got[token] = exc
    return got


def test_send_reports_each_outcome_and_refuses_oversized_records(
    kafka_broker: KafkaBroker, topic: str, client: str
) -> None:
    results: Results = queue.SimpleQueue()
    producer = producer_factory(client)(
        ProducerConfig(kafka_broker.bootstrap, topic, max_request_size=64 * 1024), results
    )
    try:
        for i in range(20):
            producer.send(f"k{i}".encode(), PredictionLog(prediction_id=f"k{i}").SerializeToString(), i)
        with pytest.raises(RecordRejected):
            producer.send(b"big", PredictionLog(prediction_id="big", scores=[1.0] * 50_000).SerializeToString(), 99)
        producer.flush(10)
        got = outcomes(results, 20, poll=producer.poll)
    finally:
        producer.close()
    assert got == {i: None for i in range(20)}
    assert [r.prediction_id for r in read_topic(kafka_broker.bootstrap, topic, 20)] == [f"k{i}" for i in range(20)]


def test_both_clients_put_a_key_on_partition_crc32_of_it(kafka_broker: KafkaBroker, client: str) -> None:
    """kafka-python gets librdkafka's keyed placement (crc32(key) % partitions) instead of its pure-Python
    murmur2: a prediction lands on the same partition whichever client the server runs."""
    from kafka import KafkaConsumer, TopicPartition

    name = f"parts-{client}-{os.getpid()}"
    create_topic(kafka_broker.bootstrap, name, partitions=4)
    results: Results = queue.SimpleQueue()
    producer = producer_factory(client)(ProducerConfig(kafka_broker.bootstrap, name), results)
    keys = [os.urandom(16).hex().encode() for _ in range(40)]
    try:
        for i, key in enumerate(keys):
            producer.send(key, PredictionLog(prediction_id=key.decode()).SerializeToString(), i)
        producer.flush(10)
        got = outcomes(results, len(keys), poll=producer.poll)
    finally:
        producer.close()
    assert got == dict.fromkeys(range(len(keys)))
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(name, p) for p in range(4)]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        placed: dict[bytes, int] = {}
        deadline = time.monotonic() + 20
        while len(placed) < len(keys) and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=300, max_records=1_000).items():
                placed.update((m.key, tp.partition) for m in messages)
    finally:
        consumer.close()
    assert placed == {key: zlib.crc32(key) % 4 for key in keys}
    assert len(set(placed.values())) > 1  # 40 random keys over 4 partitions


def test_connect_to_nothing_fails_within_the_connect_timeout(client: str) -> None:
    config = ProducerConfig(f"127.0.0.1:{free_port()}", "t", connect_timeout_ms=500)
    with pytest.raises((ProducerUnavailable, Exception)):
        producer_factory(client)(config, queue.SimpleQueue())


def test_kafka_python_close_stops_its_io_thread_while_the_broker_hangs(kafka_broker: KafkaBroker, topic: str) -> None:
    """Before: the sink closed a discarded producer with close(timeout=0), whose flush(0) raises while records
    are pending, so the producer never closed: its I/O thread went on spinning (holding the GIL) next to
    the event loop, and its __del__ later flushed for 1 s on whatever thread the GC ran in."""
    results: Results = queue.SimpleQueue()
    producer = KafkaPythonProducer(ProducerConfig(kafka_broker.bootstrap, topic), results)
    io_thread = producer._producer._sender
    os.kill(kafka_broker.pid, signal.SIGSTOP)
    try:
        for i in range(10):
            producer.send(b"k", PredictionLog(prediction_id=f"h{i}").SerializeToString(), i)
        time.sleep(0.2)  # the batch is in flight to a broker that does not answer
        producer.close()
        io_thread.join(5)
        alive = io_thread.is_alive()
    finally:
        os.kill(kafka_broker.pid, signal.SIGCONT)
    assert not alive
    got = outcomes(results, 10, timeout_s=5)
    assert len(got) == 10 and all(exc is not None for exc in got.values())  # failed, so the sink spools them


def test_a_dropped_kafka_python_producer_does_not_flush_in_the_garbage_collector(
    kafka_broker: KafkaBroker, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kafka-python's KafkaProducer.__del__ calls close(timeout=1): a flush of up to 1 s on the thread that
    happens to run the GC, which can be the event loop. The sink closes producers on its own thread instead."""
    producer = KafkaPythonProducer(ProducerConfig(kafka_broker.bootstrap, topic), queue.SimpleQueue())
    inner = producer._producer
    closes: list[str] = []
    monkeypatch.setattr(type(inner), "close", lambda self, *a, **k: closes.append(threading.current_thread().name))
    io_thread = inner._sender
    del producer, inner
    gc.collect()
    assert closes == []
    io_thread.force_close()  # this test's own clean-up (the sink calls producer.close())
    io_thread.join(5)


def test_confluent_without_its_package_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import now raises ImportError
    with pytest.raises(MissingDependency, match=r"sibyl\[kafka-fast\]"):
        producer_factory("confluent")


def test_the_default_install_compresses_with_lz4_and_checksums_in_c() -> None:
    """Both are dependencies because the log's cost depends on them (docs/predlog.md): without the lz4 package
    the codec falls back to gzip (~275 us per 100-row record), without crc32c kafka-python computes each record
    batch's CRC-32C in Python (~1 ms per 6.6 KB)."""
    from kafka.record import util

    assert ProducerConfig("127.0.0.1:9", "t").codec == "lz4"
    assert util.crc32c_c is not None
    assert util.calc_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
