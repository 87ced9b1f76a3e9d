"""Kafka sink throughput to a local tansu broker and the caller-side cost of submit(), plus `tail --kafka`.

Run with -s to see the numbers; the assertions check delivery only (never speed).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from sibyl.cli.main import main
from sibyl.observability.metrics import Metrics
from sibyl.predlog.kafka import KafkaSink
from sibyl.predlog.spool import Spool
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.kafkaread import count, read_topic, wait_for
from tests.support.servers import KafkaBroker


def realistic(i: int) -> PredictionLog:
    """One row, 20 features, one score: about what a single-row Predict logs per model."""
    r = PredictionLog(
        prediction_id=uuid.uuid4().hex, request_id=f"r{i}", predictor="eta", model="gbdt", version="3",
        sent_at_unix_nanos=time.time_ns(), num_rows=1, score_dim=1, scores=[0.42], latency_ms=0.3, host="h1",
        feature_names=[f"f{j}" for j in range(20)], feature_values=[j * 0.5 for j in range(20)],
    )  # fmt: skip
    r.context["consumer_id"] = str(i)
    return r


def test_throughput_and_submit_cost(kafka_broker: KafkaBroker, topic: str, tmp_path: Path) -> None:
    metrics = Metrics()
    sink = KafkaSink(kafka_broker.bootstrap, topic, Spool(tmp_path / "spool", 1 << 28), metrics)
    sink.start()
    n = 20_000
    records = [realistic(i) for i in range(n)]
    wait_for(lambda: sink._producer is not None, 10, "the producer to connect")
    t0 = time.perf_counter()
    costs = []
    for r in records:
        s = time.perf_counter_ns()
        sink.submit(r)
        costs.append(time.perf_counter_ns() - s)
    wait_for(lambda: count(metrics, "sent") >= n, 60, "every record acknowledged")
    elapsed = time.perf_counter() - t0
    sink.close(10)
    costs.sort()
    got = read_topic(kafka_broker.bootstrap, topic, n, timeout_s=30)
    assert len(got) == n and count(metrics, "spooled") == 0
    print(
        f"\nkafka sink: {n} records ({len(records[0].SerializeToString())} B each) acked in {elapsed:.2f} s"
        f" = {n / elapsed:,.0f} records/s; submit() p50 {costs[n // 2] / 1000:.2f} us,"
        f" p99 {costs[n * 99 // 100] / 1000:.2f} us, max {costs[-1] / 1000:.1f} us"
    )


def test_tail_kafka_last_n_and_by_prediction_id(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = KafkaSink(kafka_broker.bootstrap, topic, Spool(tmp_path / "spool", 1 << 20), Metrics())
    sink.start()
    for i in range(30):
        sink.submit(PredictionLog(prediction_id=f"k{i % 3}", model="m", scores=[float(i)]))
    sink.close(10)
    base = ["predlog", "tail", "--kafka", kafka_broker.bootstrap, "--topic", topic]
    assert main([*base, "-n", "2"]) == 0
    assert [json.loads(x)["scores"][0] for x in capsys.readouterr().out.splitlines()] == [28.0, 29.0]
    assert main([*base, "-n", "0", "--prediction-id", "k1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    assert main([*base[:-1], "no-such-topic"]) == 2
    assert "not found" in capsys.readouterr().err
