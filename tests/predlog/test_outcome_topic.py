"""Outcomes on Kafka through a real server and the test broker: the outcomes topic, keyed by prediction_id, on the
partition of that prediction's records (both topics with 4 partitions, both producers); a broker that cannot be
reached keeps them in the outcome spool (spool_dir/outcomes), as the prediction log keeps its records."""

from __future__ import annotations

import uuid
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
from kafka import KafkaConsumer, TopicPartition

from sibyl.predlog.kafka import split_payload
from sibyl.predlog.outcome_sink import OUTCOME_SPOOL
from sibyl.predlog.spool import Spool
from sibyl.v1.outcome_pb2 import Outcome, ReportOutcomesRequest
from sibyl.v1.outcome_pb2_grpc import OutcomeServiceStub
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.inproc import running_server
from tests.support.servers import KafkaBroker, create_topic, free_port

PARTITIONS = 4
CALLS = 24


def read_partitions(bootstrap: str, topic: str, at_least: int) -> dict[int, list[Any]]:
    """Every message of every partition, from the beginning (assign + seek: tansu's group join is slow)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=100_000)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: dict[int, list[Any]] = defaultdict(list)
        idle = 0
        for _ in range(100):  # bounded: ~30 s of empty polls at most
            batch = consumer.poll(timeout_ms=300)
            idle = 0 if batch else idle + 1
            for tp, messages in batch.items():
                out[tp.partition].extend(messages)
            if sum(map(len, out.values())) >= at_least and idle >= 2:
                break
        return out
    finally:
        consumer.close()


async def test_outcomes_land_keyed_on_their_predictions_partition(
    kafka_broker: KafkaBroker, client: str, store: Path
) -> None:
    kafka_broker.start()
    predictions, outcomes = f"predlog-{uuid.uuid4().hex[:8]}", f"outcomes-{uuid.uuid4().hex[:8]}"
    for topic in (predictions, outcomes):
        create_topic(kafka_broker.bootstrap, topic, partitions=PARTITIONS)
    predlog = {
        "sink": "kafka",
        "kafka_bootstrap": kafka_broker.bootstrap,
        "kafka_client": client,
        "kafka_linger_ms": 5,
        "topic": predictions,
        "outcomes_topic": outcomes,
    }
    async with running_server(store, predlog=predlog) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            predict = PredictionServiceStub(channel).Predict
            ids = [
                (await predict(PredictRequest(predictor="p", rows=[FeatureRow()] * 2), timeout=10)).prediction_id
                for _ in range(CALLS)
            ]
            report = [Outcome(prediction_id=pid, row=r, value=float(r)) for pid in ids for r in (0, 1)]
            answer = await OutcomeServiceStub(channel).Report(ReportOutcomesRequest(outcomes=report), timeout=10)
        assert answer.accepted == 2 * CALLS
    # the server stopped: both logs flushed. Primary and shadow: two records per call.
    logged = read_partitions(kafka_broker.bootstrap, predictions, 2 * CALLS)
    got = read_partitions(kafka_broker.bootstrap, outcomes, 2 * CALLS)
    where = {PredictionLog.FromString(m.value).prediction_id: p for p, ms in logged.items() for m in ms}
    assert set(where) == set(ids)
    landed = [(p, m.key, Outcome.FromString(m.value)) for p, ms in got.items() for m in ms]
    assert sorted((o.prediction_id, o.row) for _, _, o in landed) == sorted((o.prediction_id, o.row) for o in report)
    for partition, key, outcome in landed:
        assert key == outcome.prediction_id.encode()
        assert partition == where[outcome.prediction_id] == zlib.crc32(key) % PARTITIONS
        assert outcome.observed_at_unix_nanos > 0  # stamped by the server
    assert len({p for p, _, _ in landed}) > 1, "24 random ids all on one partition: not spread at all"


async def test_an_unreachable_broker_keeps_outcomes_in_their_spool(store: Path, tmp_path: Path) -> None:
    predlog = {
        "sink": "kafka",
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",  # nothing listens
        "kafka_ack_timeout_s": 0.5,
    }
    pid = "f" * 32
    async with running_server(store, predlog=predlog) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            request = ReportOutcomesRequest(outcomes=[Outcome(prediction_id=pid, row=r, value=1.0) for r in range(10)])
            assert (await OutcomeServiceStub(channel).Report(request, timeout=10)).accepted == 10
    assert server.metrics.registry.get_sample_value("sibyl_outcomes_total", {"outcome": "spooled"}) == 10
    spool = Spool(tmp_path / "spool" / OUTCOME_SPOOL, 1024**2)
    spool.open()
    try:
        kept = [split_payload(p) for p in spool.read(100).payloads]
    finally:
        spool.close()
    assert [(key, Outcome.FromString(value).row) for key, value in kept] == [(pid.encode(), r) for r in range(10)]
