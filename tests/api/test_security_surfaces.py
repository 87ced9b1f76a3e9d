"""The request surfaces, reviewed: bearer tokens guard KServe V2 like v1 (stock tritonclient), health and
reflection stay open, and no name in a request reaches a path outside the model store."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.kserve.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server

TOKEN = "s3cret"
TRITON_CLIENT = Path(__file__).parent / "programs" / "triton_grpc_tokens.py"


async def test_bearer_tokens_guard_v2_for_the_stock_tritonclient(store: Path) -> None:
    if importlib.util.find_spec("tritonclient") is None:  # run in a subprocess: its protos clash with ours
        pytest.skip("pip install 'sibyl[test]' (tritonclient)")
    async with running_server(store, security={"tokens": [TOKEN]}) as server:
        target = f"127.0.0.1:{server.port}"
        args = [sys.executable, str(TRITON_CLIENT), target, f"Bearer {TOKEN}"]
        done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60)
        async with grpc.aio.insecure_channel(target) as channel:  # health and reflection need no token
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            services = [s.name async for r in stream for s in r.list_services_response.service]
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    denied = "StatusCode.UNAUTHENTICATED"
    assert out == {
        **{f"{call} {who}": denied for call in ("infer", "metadata", "live") for who in ("none", "wrong")},
        **{f"{call} token": "OK" for call in ("infer", "metadata", "live")},
    }, out
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "inference.GRPCInferenceService" in services


# Names a request carries that would leave the store if joined into a path; and plain unknown ones.
ESCAPES = ["../outside", "../../outside/models/evil", "/etc/passwd", "m/../../x", "..", ".", "m\\..\\x", "m\x00", "~"]


def _outside_model(store: Path) -> Path:
    """A valid model version beside the store (tmp/outside/models/evil/1): nothing may load it."""
    outside = store / "outside"  # beside store/, the model store
    shutil.copytree(store / "store" / "models" / "m", outside / "models" / "evil")
    return outside


async def test_no_name_in_a_request_reaches_outside_the_store(store: Path) -> None:
    _outside_model(store)
    row = [FeatureRow(features={"amount": 1.0})]
    codes: dict[str, set[str]] = {}

    async def code(what: str, call: object) -> None:
        try:
            await call  # type: ignore[misc]
            result = "OK"
        except grpc.aio.AioRpcError as exc:
            result = exc.code().name
        codes.setdefault(what, set()).add(result)

    async with running_server(store) as server:
        loaded = set(server.registry.snapshot.models)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            v1, kserve = PredictionServiceStub(channel), GRPCInferenceServiceStub(channel)
            tensor = v2.ModelInferRequest.InferInputTensor(
                name="amount", datatype="FP32", shape=[1], contents=v2.InferTensorContents(fp32_contents=[1])
            )
            for name in ESCAPES:
                ref = f"m@{name}"
                await code("v1 predictor", v1.Predict(PredictRequest(predictor=name, rows=row), timeout=5))
                for override in (name, ref):
                    request = PredictRequest(predictor="p", rows=row, model_override=override)
                    await code("v1 model_override", v1.Predict(request, timeout=5))
                    request = PredictRequest(predictor="p", rows=row, extra_models=[override])
                    await code("v1 extra_models", v1.Predict(request, timeout=5))
                request_v2 = v2.ModelInferRequest(model_name=name, inputs=[tensor])
                await code("v2 model_name", kserve.ModelInfer(request_v2, timeout=5))
                for version in (name, ref, f"evil@{name}"):
                    request_v2 = v2.ModelInferRequest(model_name="p", model_version=version, inputs=[tensor])
                    await code("v2 model_version", kserve.ModelInfer(request_v2, timeout=5))
                    metadata = v2.ModelMetadataRequest(name="p", version=version)
                    await code("v2 ModelMetadata", kserve.ModelMetadata(metadata, timeout=5))
                    await code("v2 ModelConfig", kserve.ModelConfig(v2.ModelConfigRequest(name="p", version=version)))
                    await code("v2 ModelReady", kserve.ModelReady(v2.ModelReadyRequest(name="p", version=version)))
                await code("v2 ModelMetadata name", kserve.ModelMetadata(v2.ModelMetadataRequest(name=name)))
        assert set(server.registry.snapshot.models) == loaded, "a request loaded a model"
    allowed = {"INVALID_ARGUMENT", "NOT_FOUND"}
    assert all(found <= allowed or what == "v2 ModelReady" for what, found in codes.items()), codes
    assert codes["v2 ModelReady"] <= {"OK", "INVALID_ARGUMENT"}  # OK means "ready: false", nothing loaded
    assert "INVALID_ARGUMENT" in codes["v1 model_override"] and "INVALID_ARGUMENT" in codes["v2 model_version"]
