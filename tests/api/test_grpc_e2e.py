"""End to end through gRPC: real server, real ONNX models, scores equal to onnxruntime run directly."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sibyl.kserve import grpc_predict_v2_pb2 as v2_pb2
from sibyl.kserve.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from sibyl.models.predictor import ModelRef
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, FeatureRow, PredictRequest, Role
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import PRIMARY_WEIGHTS, features_on, running_server
from tests.support.onnxgen import expected_scores


async def test_predict_fills_features_and_matches_onnxruntime(store: Path) -> None:
    async with running_server(store, features=features_on(store)) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            request = PredictRequest(
                request_id="r1",
                predictor="p",
                context={"consumer_id": "c1"},
                rows=[
                    FeatureRow(features={"amount": 2.0}, entities={"store_id": "s1"}),
                    FeatureRow(features={"amount": 1.0, "rating": 3.0}, entities={"store_id": "s1"}),
                    FeatureRow(features={"amount": 0.5}, entities={"store_id": "unknown"}),
                ],
            )
            response = await PredictionServiceStub(channel).Predict(request, timeout=5)
        model = await server.registry.model(ModelRef("m", "1"))
    matrix = np.array(
        [[2.0, 40, 4.5, 0.5, -0.5], [1.0, 40, 3.0, 0.5, -0.5], [0.5, 40, 4.0, 0.5, -0.5]],  # row 3: rating default 4
        np.float32,
    )
    assert response.request_id == "r1" and response.prediction_id and response.num_rows == 3
    (primary,) = response.results
    assert (primary.model, primary.version, primary.role, primary.dim) == ("m", "1", Role.ROLE_PRIMARY, 1)
    direct = ort.InferenceSession(model.manifest and server.registry.catalog.read_model(ModelRef("m", "1")))
    expected = direct.run(["probabilities"], {"input": matrix})[0][:, 1]
    np.testing.assert_allclose(primary.scores, expected, rtol=1e-6)
    np.testing.assert_allclose(primary.scores, expected_scores(PRIMARY_WEIGHTS, -0.5, matrix), rtol=1e-5)
    assert {d.feature: list(d.rows) for d in response.defaulted} == {"rating": [2]}


async def test_dense_form_extra_models_and_override(store: Path) -> None:
    async with running_server(store, features=features_on(store)) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            values = np.array([[1.0, 30, 4], [2.0, 31, 5]], "<f4")
            dense = DenseRows(feature_names=["amount", "age", "rating"], values=values.tobytes(), num_rows=2)
            request = PredictRequest(
                predictor="p",
                dense=dense,
                row_entities=[EntityColumn(entity="consumer_id", ids=["c1", "nobody"])],
                extra_models=["s@1"],
            )
            response = await stub.Predict(request, timeout=5)
            assert [(r.model, r.role) for r in response.results] == [("m", Role.ROLE_PRIMARY), ("s", Role.ROLE_EXTRA)]
            assert {d.feature: list(d.rows) for d in response.defaulted} == {"emb": [1]}
            request.ClearField("extra_models")
            request.model_override = "s"
            override = await stub.Predict(request, timeout=5)
            assert [(r.model, r.role) for r in override.results] == [("s", Role.ROLE_OVERRIDE)]
            assert list(override.results[0].scores) == list(response.results[1].scores)


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (PredictRequest(predictor="nope", rows=[FeatureRow()]), grpc.StatusCode.NOT_FOUND, "'nope' not found"),
        (
            PredictRequest(predictor="p", rows=[FeatureRow()], extra_models=["ghost"]),
            grpc.StatusCode.NOT_FOUND,
            "ghost",
        ),
        (PredictRequest(predictor="p"), grpc.StatusCode.INVALID_ARGUMENT, "no rows"),
        (
            PredictRequest(predictor="p", rows=[FeatureRow(features={"amunt": 1})]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "amunt",
        ),
        (PredictRequest(predictor="p", rows=[FeatureRow()] * 11), grpc.StatusCode.INVALID_ARGUMENT, "at most 10"),
    ],
)
async def test_errors_have_clear_codes(
    store: Path, request_: PredictRequest, code: grpc.StatusCode, message: str
) -> None:
    async with running_server(store, server={"max_rows": 10}) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await PredictionServiceStub(channel).Predict(request_, timeout=5)
    assert info.value.code() == code
    assert message in (info.value.details() or "")


async def test_expired_deadline_is_honoured(store: Path) -> None:
    async with running_server(store) as server:
        from sibyl.errors import DeadlineExceeded

        with pytest.raises(DeadlineExceeded):
            await server.service.predict(PredictRequest(predictor="p", rows=[FeatureRow()]), time_remaining_s=0.0)
        # 5,000 map rows take milliseconds to decode, so a 1 ms deadline has passed before any answer can exist.
        big = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": float(i)}) for i in range(5000)])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await PredictionServiceStub(channel).Predict(big, timeout=0.001)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_health_and_reflection(store: Path) -> None:
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "sibyl.v1.PredictionService" in names and "grpc.health.v1.Health" in names


async def test_every_answered_prediction_is_logged_with_its_shadow(store: Path) -> None:
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            ids = [
                (
                    await stub.Predict(PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": i})]))
                ).prediction_id
                for i in range(20)
            ]
    records = [json.loads(line) for line in (store / "predictions.jsonl").read_text().splitlines()]
    by_role: dict[str, set[str]] = {}
    for r in records:
        by_role.setdefault(r["role"], set()).add(r["prediction_id"])
    assert by_role["ROLE_PRIMARY"] == set(ids)
    assert by_role["ROLE_SHADOW"] == set(ids)


async def test_every_answer_names_its_process_errors_included(store: Path) -> None:
    """The `sibyl-worker` trailer on answers and on refusals, both services (README: each answer carries it)."""
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            v1, v2 = PredictionServiceStub(channel), GRPCInferenceServiceStub(channel)
            calls = {
                "v1 answer": v1.Predict(PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})])),
                "v1 error": v1.Predict(PredictRequest(predictor="nope", rows=[FeatureRow()])),
                "v2 answer": v2.ServerReady(v2_pb2.ServerReadyRequest()),
                "v2 infer error": v2.ModelInfer(v2_pb2.ModelInferRequest(model_name="nope")),
                "v2 error": v2.ModelMetadata(v2_pb2.ModelMetadataRequest(name="nope")),
            }
            workers = {}
            for name, call in calls.items():
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await call
                workers[name] = dict(await call.trailing_metadata() or ()).get("sibyl-worker")
    async with running_server(store, security={"tokens": ["s3cret"]}) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = PredictionServiceStub(channel).Predict(PredictRequest(predictor="p", rows=[FeatureRow()]))
            with pytest.raises(grpc.aio.AioRpcError):  # no token: UNAUTHENTICATED
                await call
            workers["unauthenticated"] = dict(await call.trailing_metadata() or ()).get("sibyl-worker")
    assert workers == dict.fromkeys([*calls, "unauthenticated"], str(os.getpid()))
