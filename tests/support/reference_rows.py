"""Three rows for predictor p of the test store (tests/support/inproc.publish_models), and gRPC Predict's scores
for them: the reference the V2, REST and client tests compare their answers with."""

from __future__ import annotations

import grpc

from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub

AMOUNTS = [2.0, 1.0, 0.5]
CONSUMER_IDS = ["c1", "c1", "nobody"]  # "nobody" is not in the feature store: its features take their defaults


async def predict_scores(port: int, override: str = "", **given: float) -> list[float]:
    """The primary's scores (or `override`'s, a model@version) for the three rows, store_id s1, `given` features
    added to every row."""
    rows = [
        FeatureRow(features={"amount": a, **given}, entities={"consumer_id": c})
        for a, c in zip(AMOUNTS, CONSUMER_IDS, strict=True)
    ]
    request = PredictRequest(predictor="p", context={"store_id": "s1"}, rows=rows, model_override=override)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await PredictionServiceStub(channel).Predict(request, timeout=5)
    return list(response.results[0].scores)
