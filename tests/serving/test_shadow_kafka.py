"""Through the server to a real Kafka-protocol broker: N predictions with a shadow at sample 1.0 give exactly N
primary and N shadow records, decoded and joined on the prediction id."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc

from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, Role
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import publish_models, running_server
from tests.support.kafkaread import read_topic
from tests.support.servers import KafkaBroker, create_topic

N = 40


async def test_primary_and_shadow_records_join_on_prediction_id(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    publish_models(tmp_path / "store")  # predictor p: primary m@1, shadow s@1 at sample 1.0
    topic = f"predictions-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker.bootstrap, topic)
    predlog = {"sink": "kafka", "kafka_bootstrap": kafka_broker.bootstrap, "topic": topic}
    async with running_server(tmp_path, predlog=predlog) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            answered = {}
            for i in range(N):
                request = PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": i})])
                response = await stub.Predict(request, timeout=5)
                answered[response.prediction_id] = response
    # stop() finished the shadows and flushed the sink.
    records = read_topic(kafka_broker.bootstrap, topic, at_least=2 * N)
    by_role: dict[int, dict[str, object]] = {Role.ROLE_PRIMARY: {}, Role.ROLE_SHADOW: {}}
    for record in records:
        by_role[record.role][record.prediction_id] = record
    assert len(records) == 2 * N
    assert set(by_role[Role.ROLE_PRIMARY]) == set(answered) == set(by_role[Role.ROLE_SHADOW])
    for prediction_id, response in answered.items():
        primary = by_role[Role.ROLE_PRIMARY][prediction_id]
        shadow = by_role[Role.ROLE_SHADOW][prediction_id]
        assert (primary.model, shadow.model) == ("m", "s")  # type: ignore[attr-defined]
        assert list(primary.scores) == list(response.results[0].scores)  # type: ignore[attr-defined]
        assert primary.request_id == shadow.request_id == response.request_id  # type: ignore[attr-defined]
        assert list(shadow.feature_names) == list(primary.feature_names)  # type: ignore[attr-defined]
