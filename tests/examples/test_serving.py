"""The bundled example served end to end: scores equal onnxruntime on a matrix built by hand from
features.jsonl, and drift gauges appear once traffic flows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from google.protobuf import json_format

from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE
from sibyl.models.manifest import Manifest
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest, Role
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server

REQUEST = EXAMPLE_STORE.parent / "request.json"


def entities() -> dict[tuple[str, str], dict[str, object]]:
    rows = (json.loads(line) for line in EXAMPLE_FEATURES.read_text().splitlines())
    return {(r["entity"], r["id"]): r["features"] for r in rows}


def expected_matrix(manifest: Manifest, request: PredictRequest) -> np.ndarray:
    known = entities()
    out = []
    for row in request.rows:
        ids = {**request.context, **row.entities}
        values: list[float] = []
        for spec in manifest.inputs:
            if spec.name in row.features:
                value: object = row.features[spec.name]
            else:
                value = known.get((spec.entity or "", ids.get(spec.entity or "", "")), {}).get(spec.name)
            if value is None:
                value = spec.default
            values.extend(value if isinstance(value, list | tuple) else [value])  # type: ignore[arg-type]
        out.append(values)
    return np.asarray(out, np.float32)


async def test_example_request_scores_equal_onnxruntime_and_feed_drift(tmp_path: Path) -> None:
    request = json_format.Parse(REQUEST.read_text(), PredictRequest())
    manifest = Manifest.model_validate_json((EXAMPLE_STORE / "models/gbdt/1/manifest.json").read_text())
    session = ort.InferenceSession(str(EXAMPLE_STORE / "models/gbdt/1/model.onnx"))
    expected = session.run(["probabilities"], {"input": expected_matrix(manifest, request)})[0][:, 1]

    async with running_server(
        tmp_path,
        f"file://{EXAMPLE_STORE}",
        features={"backend": "memory", "memory_file": str(EXAMPLE_FEATURES)},
        metrics={"drift_sample": 1.0},
    ) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            response = await stub.Predict(request, timeout=5)
            assert [(r.model, r.role) for r in response.results] == [("gbdt", Role.ROLE_PRIMARY)]
            np.testing.assert_allclose(response.results[0].scores, expected, rtol=1e-5)
            assert not response.defaulted  # consumer 7 and stores 3, 42 are all in features.jsonl

            # 1,500 rows of request-only features with known stores: enough for the drift monitor to export.
            rng = np.random.default_rng(0)
            names = ["distance_km", "hour_of_day", "is_weekend", "promo_pct"]
            for _ in range(5):
                values = np.column_stack(
                    [
                        rng.uniform(0, 10, 300),
                        rng.integers(0, 24, 300),
                        rng.integers(0, 2, 300),
                        rng.choice([0, 10, 20], 300),
                    ]
                ).astype("<f4")
                batch = PredictRequest(
                    predictor="example",
                    context={"consumer_id": "7"},
                    dense=DenseRows(feature_names=names, values=values.tobytes(), num_rows=300),
                    row_entities=[EntityColumn(entity="store_id", ids=[str(i % 100 + 1) for i in range(300)])],
                )
                await stub.Predict(batch, timeout=10)
            # Drift is observed on the records lane after the response (up to its 20 ms linger later).
            gauge = server.metrics.registry.get_sample_value
            labels = {"model": "gbdt", "version": "1"}
            for _ in range(200):
                psi = gauge("sibyl_drift_psi", labels | {"feature": "__prediction__"})
                distance = gauge("sibyl_drift_psi", labels | {"feature": "distance_km"})
                if psi is not None and distance is not None:
                    break
                await asyncio.sleep(0.05)
    assert psi is not None and psi >= 0
    assert distance is not None and distance >= 0
