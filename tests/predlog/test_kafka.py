"""Kafka sink against a real tansu broker: exact delivery, a broker outage without loss, crash + replay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sibyl.observability.metrics import Metrics
from sibyl.predlog.kafka import KafkaSink
from sibyl.predlog.spool import Spool
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.kafkaread import count, read_topic, wait_for
from tests.support.servers import DurableKafkaBroker, KafkaBroker, create_topic, free_port

FAST = {
    "connect_timeout_ms": 1_000,
    "request_timeout_ms": 1_000,
    "delivery_timeout_ms": 2_000,
    "max_block_ms": 500,
    "backoff_s": (0.2, 0.5),
}


def record(i: int, tag: str) -> PredictionLog:
    return PredictionLog(prediction_id=f"{tag}-{i}", predictor="p", model="m", version="1", num_rows=1, scores=[i / 10])


def make_sink(bootstrap: str, topic: str, spool_dir: Path, metrics: Metrics, **kw: object) -> KafkaSink:
    return KafkaSink(bootstrap, topic, Spool(spool_dir, 64 * 1024 * 1024), metrics, **{**FAST, **kw})  # type: ignore[arg-type]


def test_n_records_in_exactly_n_out(kafka_broker: KafkaBroker, topic: str, client: str, tmp_path: Path) -> None:
    metrics = Metrics()
    sink = make_sink(kafka_broker.bootstrap, topic, tmp_path / "spool", metrics, client=client)
    sink.start()
    n = 3_000
    for i in range(n):
        sink.submit(record(i, "a"))
    sink.close(10)
    got = read_topic(kafka_broker.bootstrap, topic, n)
    assert len(got) == n
    assert [r.prediction_id for r in got] == [f"a-{i}" for i in range(n)]  # one partition: order kept
    assert got[7].scores[0] == pytest.approx(0.7)
    assert count(metrics, "sent") == n
    assert count(metrics, "spooled") == count(metrics, "dropped") == 0


def test_broker_outage_loses_nothing_and_never_blocks(
    durable_broker: DurableKafkaBroker, client: str, tmp_path: Path
) -> None:
    topic = "predlog-outage"
    create_topic(durable_broker.bootstrap, topic)
    metrics = Metrics()
    sink = make_sink(durable_broker.bootstrap, topic, tmp_path / "spool", metrics, client=client)
    sink.start()
    submitted: list[str] = []
    slowest = [0.0]
    errors: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            for i in range(100_000):  # bounded; stops long before on `stop`
                if stop.is_set():
                    return
                rec = record(i, "o")
                t0 = time.perf_counter()
                sink.submit(rec)
                slowest[0] = max(slowest[0], time.perf_counter() - t0)
                submitted.append(rec.prediction_id)
                time.sleep(0.0005)
        except BaseException as exc:  # submit must never raise
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(lambda: count(metrics, "sent") > 200, 10, "records flowing before the outage")
        durable_broker.stop()
        wait_for(lambda: count(metrics, "spooled") > 200, 15, "records spooled during the outage")
        durable_broker.start()
        wait_for(lambda: count(metrics, "replayed") > 0, 20, "the spool to replay after the broker returned")
        time.sleep(0.5)  # more records after recovery, through the direct path again
    finally:
        stop.set()
        producer.join(10)
    sink.close(15)
    assert not errors
    assert len(submitted) > 500
    # A replay that fails just before close (tansu on S3 is slow for a while after its restart) leaves records in
    # the spool, fsynced, for the next run to replay: run that next sink, so "lost" means lost, not "on disk".
    restarted = make_sink(durable_broker.bootstrap, topic, tmp_path / "spool", metrics, client=client)
    restarted.start()
    wait_for(lambda: not restarted.spool.has_pending(), 60, "the next run to replay the spool")
    restarted.close(15)
    got = {r.prediction_id for r in read_topic(durable_broker.bootstrap, topic, len(submitted), timeout_s=30)}
    missing_ids = [p for p in submitted if p not in got]
    assert missing_ids == [], f"{len(missing_ids)} of {len(submitted)} records lost, e.g. {missing_ids[:5]}"
    assert count(metrics, "dropped") == 0
    assert count(metrics, "spooled") > 0 and count(metrics, "replayed") > 0  # the outage path really ran
    print(
        f"\noutage: {len(submitted)} submitted, {len(got)} distinct in Kafka, slowest submit {slowest[0] * 1e6:.0f} us"
    )


SPOOL_UNTIL_KILLED = Path(__file__).parent / "programs" / "spool_until_killed.py"


def test_spool_left_by_a_killed_process_is_replayed_on_start(
    kafka_broker: KafkaBroker, topic: str, client: str, tmp_path: Path
) -> None:
    n = 500
    spool_dir = tmp_path / "spool"
    dead = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, str(SPOOL_UNTIL_KILLED), dead, str(spool_dir), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["spooled", str(n)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert list(spool_dir.glob("*.spool"))

    metrics = Metrics()
    sink = make_sink(kafka_broker.bootstrap, topic, spool_dir, metrics, client=client)
    sink.start()
    wait_for(lambda: count(metrics, "replayed") >= n, 20, "the leftover spool to replay")
    sink.close(10)
    got = [r.prediction_id for r in read_topic(kafka_broker.bootstrap, topic, n)]
    assert got == [f"c-{i}" for i in range(n)]  # in order, each once
    assert list(spool_dir.glob("*.spool")) == []
