"""Kafka broker killed (SIGKILL) and restarted under load: calls keep answering, and every record reaches the
broker once it is back (held by the producer or spooled to disk, then replayed); none lost.

The broker is tansu with its storage in the (in-process, moto) S3 server, so what it acknowledged survives
its own SIGKILL, like a real broker's disk. Anything missing afterwards was lost by sibyl, not by the broker.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Load, report
from inproc import make_store, running_server

from sibyl.server import SibylServer
from sibyl.testing.kafka_broker import KafkaBroker, create_topic
from sibyl.testing.servers import S3Server, make_bucket
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, Role
from sibyl.v1.predlog_pb2 import PredictionLog

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
TOPIC = "sibyl.predictions"


class DurableBroker(KafkaBroker):
    """tansu with s3:// storage: acknowledged records survive a SIGKILL."""

    def __init__(self, s3_endpoint: str, bucket: str) -> None:
        self._aws = {
            "AWS_ENDPOINT": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
        }  # fmt: skip
        self._bucket = bucket
        super().__init__()

    def _command(self) -> list[str]:
        command = super()._command()
        command[command.index("--storage-engine") + 1] = f"s3://{self._bucket}/"
        return command

    def _spawn_and_wait(self) -> None:
        saved = {key: os.environ.get(key) for key in self._aws}
        os.environ.update(self._aws)  # the launcher passes this process's env on
        try:
            super()._spawn_and_wait()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def broker(s3_server: S3Server, tmp_path: Path) -> Iterator[DurableBroker]:
    s3_server.start()
    bucket = f"tansu-{int(time.time() * 1000) % 10**9}"
    make_bucket(s3_server.endpoint_url, bucket)
    with DurableBroker(s3_server.endpoint_url, bucket) as running:
        create_topic(running.bootstrap, TOPIC)
        yield running


def primary_ids_in_topic(bootstrap: str, limit_s: float = 30.0) -> set[str]:
    """Read the topic from the beginning up to its end offsets at the time of the call."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    ids: set[str] = set()
    try:
        partitions = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC) or {0}]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + limit_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read {TOPIC} to its end within {limit_s} s"
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    record = PredictionLog.FromString(message.value)
                    if record.role == Role.ROLE_PRIMARY:
                        ids.add(record.prediction_id)
    finally:
        consumer.close()
    return ids


def request(i: int) -> PredictRequest:
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i % 5)})])


def sample(server: SibylServer, outcome: str) -> float:
    return server.metrics.registry.get_sample_value("sibyl_predlog_records_total", {"outcome": outcome}) or 0.0


async def test_kafka_broker_killed_and_restarted_under_load(broker: DurableBroker, tmp_path: Path) -> None:
    make_store(tmp_path / "store")
    predlog = {
        "sink": "kafka",
        "kafka_bootstrap": broker.bootstrap,
        "topic": TOPIC,
        "spool_dir": str(tmp_path / "spool"),
    }
    async with running_server(tmp_path, predlog=predlog) as server:
        async with Load(f"127.0.0.1:{server.port}", request) as load:
            await load.settle(100)
            load.mark("fault")
            broker.kill()
            await load.settle(300)
            await asyncio.sleep(1.0)
            spooled = sample(server, "spooled")
            load.mark("repair")
            await asyncio.to_thread(broker.start)
            load.mark("broker up")
            # Recovered when everything answered before the repair has reached the broker.
            before_repair = {
                o.response.prediction_id for o in load.outcomes if o.response and o.t < load.marks["repair"]
            }
            deadline = time.monotonic() + 60
            while missing := before_repair - await asyncio.to_thread(primary_ids_in_topic, broker.bootstrap):
                if time.monotonic() > deadline:
                    when = sorted(o.t for o in load.outcomes if o.response and o.response.prediction_id in missing)
                    raise AssertionError(f"{len(missing)} records answered at {when[:3]}..{when[-3:]} s never reached the broker (fault at {load.marks['fault']:.2f} s)")
                await asyncio.sleep(0.2)
            load.mark("replayed")
        replayed = sample(server, "replayed")
    logged = await asyncio.to_thread(primary_ids_in_topic, broker.bootstrap)
    recovery = {"spool replayed after broker up": load.marks["replayed"] - load.marks["broker up"]}
    print(f"\n[kafka] records spooled while down: {spooled:.0f}, replayed: {replayed:.0f}")
    report("kafka broker killed", load, logged, recovery)
    assert set(load.codes()) == {"OK"}  # the log never holds a call up
    assert load.codes(load.marks["fault"], load.marks["repair"])["OK"] > 100  # answered while the broker was down
