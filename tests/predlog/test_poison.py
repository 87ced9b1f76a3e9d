"""Records the broker cannot take (over max_request_size), against real tansu with both clients: trimmed and
sent, or dead-lettered; the records around them are delivered either way (issue 14: a 2 MB record used to be
spooled and retried first forever, so everything behind it spooled and then dropped)."""

from __future__ import annotations

import json
from pathlib import Path

from sibyl.observability.metrics import Metrics
from sibyl.predlog.kafka import KafkaSink
from sibyl.predlog.poison import DEAD_LETTER_DIR, DEAD_LETTER_FILE
from sibyl.predlog.spool import Spool
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.kafkaread import count, read_topic
from tests.support.servers import KafkaBroker

ROWS, FEATURES = 10_000, 50


def small(i: int) -> PredictionLog:
    return PredictionLog(prediction_id=f"s-{i}", predictor="p", num_rows=1, scores=[0.1], feature_values=[1.0])


def wide() -> PredictionLog:
    """10,000 rows x 50 features: ~2 MB serialized, twice the default max_request_size."""
    return PredictionLog(
        prediction_id="wide",
        predictor="p",
        num_rows=ROWS,
        feature_names=[f"f{j}" for j in range(FEATURES)],
        feature_values=[0.5] * (ROWS * FEATURES),
        score_dim=1,
        scores=[0.25] * ROWS,
    )


def sink(broker: KafkaBroker, topic: str, tmp_path: Path, client: str, metrics: Metrics) -> KafkaSink:
    return KafkaSink(broker.bootstrap, topic, Spool(tmp_path / "spool", 1 << 26), metrics, client=client)


def test_a_record_over_the_size_limit_is_sent_trimmed_and_blocks_nothing(
    kafka_broker: KafkaBroker, topic: str, client: str, tmp_path: Path
) -> None:
    assert wide().ByteSize() > 1024 * 1024
    metrics = Metrics()
    log = sink(kafka_broker, topic, tmp_path, client, metrics)
    log.start()
    for i in range(50):
        log.submit(small(i))
    log.submit(wide())
    for i in range(50, 100):
        log.submit(small(i))
    log.close(15)
    got = {r.prediction_id: r for r in read_topic(kafka_broker.bootstrap, topic, 101)}
    assert set(got) == {"wide", *(f"s-{i}" for i in range(100))}
    big = got["wide"]
    assert big.trimmed and not big.feature_values and list(big.feature_names) == [f"f{j}" for j in range(FEATURES)]
    assert big.num_rows == ROWS and len(big.scores) == ROWS  # what the prediction was is kept
    assert not got["s-7"].trimmed and list(got["s-7"].feature_values) == [1.0]
    assert count(metrics, "trimmed") == 1
    assert count(metrics, "dead_letter") == count(metrics, "dropped") == count(metrics, "spooled") == 0


def test_a_record_still_too_large_without_features_is_dead_lettered(
    kafka_broker: KafkaBroker, topic: str, client: str, tmp_path: Path
) -> None:
    huge = PredictionLog(prediction_id="huge", predictor="p", num_rows=300_000, scores=[0.5] * 300_000)  # 1.2 MB
    metrics = Metrics()
    log = sink(kafka_broker, topic, tmp_path, client, metrics)
    log.start()
    log.submit(small(0))
    log.submit(huge)
    log.submit(small(1))
    log.close(15)
    assert [r.prediction_id for r in read_topic(kafka_broker.bootstrap, topic, 2)] == ["s-0", "s-1"]
    lines = (tmp_path / "spool" / DEAD_LETTER_DIR / DEAD_LETTER_FILE).read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["record"]["prediction_id"] == "huge" and len(entry["record"]["scores"]) == 300_000
    assert entry["reason"]
    assert count(metrics, "dead_letter") == 1 and count(metrics, "trimmed") == 0
