"""sibyl.Predictor in-process: the server's scores, defaults and prediction log, without gRPC."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import sibyl
from sibyl.config import Settings, load_settings
from sibyl.errors import InvalidArgument, NotFound
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import features_on, running_server

REQUEST = PredictRequest(
    request_id="r1",
    predictor="p",
    context={"consumer_id": "c1"},
    rows=[
        FeatureRow(features={"amount": 2.0}, entities={"store_id": "s1"}),
        FeatureRow(features={"amount": 0.5}, entities={"store_id": "unknown"}),
    ],
)


def settings(tmp_path: Path, log: str) -> dict[str, Any]:
    return {
        "model_store": {"url": f"file://{tmp_path / 'store'}", "poll_interval_s": 0.2},
        "features": features_on(tmp_path),
        "predlog": {"sink": "file", "path": str(tmp_path / log), "spool_dir": str(tmp_path / "spool")},
    }


def embedded_settings(tmp_path: Path) -> Settings:
    return load_settings(**settings(tmp_path, "embedded.jsonl"))


async def test_embedded_scores_equal_the_server(store: Path) -> None:
    async with running_server(store, features=settings(store, "")["features"]) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            remote = await PredictionServiceStub(channel).Predict(REQUEST, timeout=5)
    with sibyl.Predictor.open(embedded_settings(store)) as predictor:
        local = predictor.predict(REQUEST)
        by_kwargs = predictor.predict(
            predictor="p",
            rows=[{"amount": 2.0}, {"amount": 0.5}],
            context={"consumer_id": "c1"},
            row_entities={"store_id": ["s1", "unknown"]},
        )
        dense = predictor.predict(
            predictor="p",
            features=np.array([[2.0], [0.5]]),
            feature_names=["amount"],
            context={"consumer_id": "c1"},
            row_entities={"store_id": ["s1", "unknown"]},
        )
        with pytest.raises(NotFound, match="nope"):
            predictor.predict(predictor="nope", rows=[{}])
        with pytest.raises(InvalidArgument, match="amunt"):
            predictor.predict(predictor="p", rows=[{"amunt": 1.0}])
    for response in (local, by_kwargs, dense):
        assert [(r.model, r.version) for r in response.results] == [("m", "1")]
        assert list(response.results[0].scores) == list(remote.results[0].scores)  # bit-for-bit: same code path
        assert {d.feature: list(d.rows) for d in response.defaulted} == {"rating": [1]}
    with pytest.raises(RuntimeError, match="closed"):
        predictor.predict(REQUEST)
    records = [json.loads(line) for line in (store / "embedded.jsonl").read_text().splitlines()]
    ids = {r.get("predictionId") or r.get("prediction_id") for r in records}
    assert local.prediction_id in ids, "embedded predictions are logged like the server's"
    assert len([r for r in records if local.prediction_id in json.dumps(r)]) == 2, "primary + shadow"


async def test_apredict_from_an_event_loop(store: Path) -> None:
    async with sibyl.Predictor(embedded_settings(store)) as predictor:
        responses = await asyncio.gather(*(predictor.apredict(REQUEST) for _ in range(20)))
        start = time.monotonic()
        await predictor.apredict(REQUEST, timeout_s=5.0)
        assert time.monotonic() - start < 5.0
    assert len({r.prediction_id for r in responses}) == 20
    assert len({tuple(r.results[0].scores) for r in responses}) == 1


def test_bad_arguments_are_clear(store: Path) -> None:
    with sibyl.Predictor.open(embedded_settings(store)) as predictor:
        with pytest.raises(InvalidArgument, match="not both"):
            predictor.predict(REQUEST, predictor="p")
        with pytest.raises(InvalidArgument, match="feature_names"):
            predictor.predict(predictor="p", features=np.zeros((2, 3)), feature_names=["amount"])
