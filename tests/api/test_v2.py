"""The Open Inference Protocol (KServe V2) on sibyl's port, driven by the stock tritonclient and by raw stubs.

tritonclient registers its own `inference.*` protobuf types, which clash with ours in one process (same
package, by design: wire compatibility), so the stock client runs in a subprocess.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.kserve.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from sibyl.models.predictor import ModelRef
from tests.support.inproc import features_on, running_server
from tests.support.needs import missing
from tests.support.perf_analyzer import perf_analyzer
from tests.support.reference_rows import AMOUNTS, CONSUMER_IDS, predict_scores
from tests.support.servers import MissingBinaryError

TRITON_CLIENT = Path(__file__).parent / "programs" / "triton_grpc_tour.py"


def run_tritonclient(port: int) -> dict[str, Any]:
    if importlib.util.find_spec("tritonclient") is None:  # not imported here: its protos clash with ours
        pytest.skip("pip install 'sibyl[test]' (tritonclient)")
    args = [sys.executable, str(TRITON_CLIENT), f"127.0.0.1:{port}", json.dumps(AMOUNTS), json.dumps(CONSUMER_IDS)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_stock_tritonclient_gets_the_scores_of_predict(store: Path) -> None:
    async with running_server(store, features=features_on(store)) as server:
        out = await asyncio.to_thread(run_tritonclient, server.port)
        expected = await predict_scores(server.port)
        expected_other = await predict_scores(server.port, "s@1")
        log = store / "predictions.jsonl"
        prediction_id = out["infer"]["response"]["parameters"]["prediction_id"]["string_param"]
        deadline = time.monotonic() + 5
        while log.read_text().count(prediction_id) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the shadow is scored and logged after the response
        logged = log.read_text().count(prediction_id)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["server"]["name"] == "sibyl" and "model_repository" in out["server"]["extensions"]
    assert [(m["name"], m["state"]) for m in out["index"]["models"]] == [("p", "READY")]
    meta = out["metadata"]
    assert meta["versions"] == ["1"]
    # One input, the whole row (as Triton lists an ONNX model): stock clients send one tensor per call.
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "5"]}]
    assert meta["outputs"] == [{"name": "score", "datatype": "FP32", "shape": ["-1", "1"]}]
    config = out["config"]["config"]
    assert int(config["max_batch_size"]) > 0 and config["input"] == [
        {"name": "input", "data_type": "TYPE_FP32", "dims": ["5"]}
    ]
    # Features filled from the store (age, emb by consumer_id; rating by the store_id parameter), same scores.
    np.testing.assert_allclose(out["infer"]["scores"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["infer_version"]["scores"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["infer_other_model"]["scores"], expected_other, rtol=1e-6)
    assert out["infer"]["response"]["model_version"] == "m@1"
    assert out["infer_other_model"]["response"]["model_version"] == "s@1"
    assert out["infer"]["response"]["id"] == "v2-"
    assert not np.allclose(expected, expected_other)
    assert logged == 2, "the V2 call went through the prediction log, with its shadow"
    assert out["missing"] == "StatusCode.NOT_FOUND"


def typed_request(**kwargs: Any) -> v2.ModelInferRequest:
    tensor = v2.ModelInferRequest.InferInputTensor
    request = v2.ModelInferRequest(
        model_name="p",
        inputs=[
            tensor(name="amount", datatype="FP32", shape=[3], contents=v2.InferTensorContents(fp32_contents=AMOUNTS)),
            tensor(
                name="age", datatype="INT64", shape=[3, 1], contents=v2.InferTensorContents(int64_contents=[40] * 3)
            ),
            tensor(
                name="consumer_id",
                datatype="BYTES",
                shape=[3],
                contents=v2.InferTensorContents(bytes_contents=[c.encode() for c in CONSUMER_IDS]),
            ),
        ],
        parameters={"store_id": v2.InferParameter(string_param="s1")},
    )
    for key, value in kwargs.items():
        if isinstance(value, list):
            del getattr(request, key)[:]
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    return request


async def test_typed_contents_raw_matrix_and_clear_errors(store: Path) -> None:
    async with running_server(store, features=features_on(store)) as server:
        expected = await predict_scores(server.port, age=40.0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = GRPCInferenceServiceStub(channel)
            typed = await stub.ModelInfer(typed_request(), timeout=5)
            # The whole matrix in the model's ONNX input, as raw contents.
            matrix = np.array([[2.0, 30, 4, 0, 0], [1.0, 31, 5, 0, 0]], "<f4")
            raw = v2.ModelInferRequest(
                model_name="p",
                inputs=[v2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2, 5])],
                raw_input_contents=[matrix.tobytes()],
            )
            raw_answer = await stub.ModelInfer(raw, timeout=5)
            direct = await server.registry.model(ModelRef("m", "1"))
            errors = {}
            bad = {
                "unknown model": v2.ModelInferRequest(model_name="nope", inputs=typed_request().inputs),
                "bad shape": typed_request(
                    inputs=[v2.ModelInferRequest.InferInputTensor(name="amount", datatype="FP32", shape=[2, 2, 2])]
                ),
                "raw size": v2.ModelInferRequest(model_name="p", inputs=raw.inputs, raw_input_contents=[b"\0" * 7]),
                "unknown feature": v2.ModelInferRequest(
                    model_name="p",
                    inputs=[
                        v2.ModelInferRequest.InferInputTensor(
                            name="amunt", datatype="FP32", shape=[1], contents=v2.InferTensorContents(fp32_contents=[1])
                        )
                    ],
                ),
                "unknown output": typed_request(
                    outputs=[v2.ModelInferRequest.InferRequestedOutputTensor(name="probs")]
                ),
                "missing version": typed_request(model_version="9"),
            }
            for what, request in bad.items():
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.ModelInfer(request, timeout=5)
                errors[what] = (info.value.code(), info.value.details())
            malformed = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await malformed(b"\xff\xff\xff", timeout=5)
            stats = await stub.ModelStatistics(v2.ModelStatisticsRequest(name="p"), timeout=5)
            not_ready = await stub.ModelReady(v2.ModelReadyRequest(name="p", version="9"), timeout=5)
    assert typed.outputs[0].datatype == "FP32" and list(typed.outputs[0].shape) == [3, 1]
    assert not typed.raw_output_contents, "typed in, typed out"
    np.testing.assert_allclose(typed.outputs[0].contents.fp32_contents, expected, rtol=1e-6)
    assert typed.parameters["role"].string_param == "primary" and typed.parameters["prediction_id"].string_param
    np.testing.assert_allclose(
        np.frombuffer(raw_answer.raw_output_contents[0], "<f4"), direct.run(matrix)[:, 0], rtol=1e-6
    )
    assert errors["unknown model"][0] == grpc.StatusCode.NOT_FOUND
    assert errors["bad shape"][0] == grpc.StatusCode.INVALID_ARGUMENT and "[N] or [N, k]" in errors["bad shape"][1]
    assert errors["raw size"][0] == grpc.StatusCode.INVALID_ARGUMENT and "7 bytes" in errors["raw size"][1]
    assert errors["unknown feature"][0] == grpc.StatusCode.INVALID_ARGUMENT and "amunt" in errors["unknown feature"][1]
    assert errors["unknown output"][0] == grpc.StatusCode.INVALID_ARGUMENT and "probs" in errors["unknown output"][1]
    assert errors["missing version"][0] == grpc.StatusCode.NOT_FOUND and "m@9" in errors["missing version"][1]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (s,) = stats.model_stats
    assert (s.name, s.execution_count, s.inference_count) == ("p", 2, 5)
    assert s.inference_stats.fail.count == len(bad) - 1  # the unknown model is not counted under "p"
    assert not not_ready.ready


async def test_perf_analyzer_runs_against_sibyl_with_zero_errors(store: Path) -> None:
    if perf_analyzer() is None:  # scripts/test.sh installs it; in CI a missing one fails instead of skipping
        missing(MissingBinaryError("perf_analyzer", "bash scripts/setup_perf_analyzer.sh (sets up .bench-venvs/)"))
    async with running_server(store, features=features_on(store)) as server:
        args = [
            str(perf_analyzer()),
            "-m",
            "p",
            "-x",
            "1",  # perf_analyzer needs an explicit version to find the model's statistics
            "-i",
            "grpc",
            "-u",
            f"127.0.0.1:{server.port}",
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            "200",
            "--concurrency-range",
            "2",
            "--max-trials",
            "10",
            "--stability-percentage",
            "500",  # a shared 2-core machine is noisy: this test checks protocol compatibility, not speed
        ]
        done = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(done.communicate(), timeout=60)
        stats = await GRPCInferenceServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")).ModelStatistics(
            v2.ModelStatisticsRequest(name="p"), timeout=5
        )
    text = output.decode(errors="replace")
    assert done.returncode == 0, text
    assert "Throughput" in text
    assert stats.model_stats[0].execution_count > 0 and stats.model_stats[0].inference_stats.fail.count == 0


async def test_server_ready_turns_false_while_draining(store: Path) -> None:
    async with running_server(store) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert (await stub.ServerReady(v2.ServerReadyRequest(), timeout=5)).ready
        server.service.draining = True  # what stop() sets first, before the port closes
        assert not (await stub.ServerReady(v2.ServerReadyRequest(), timeout=5)).ready
        assert (await stub.ServerLive(v2.ServerLiveRequest(), timeout=5)).live
