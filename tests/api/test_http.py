"""KServe V2 REST on its own port, driven by the stock tritonclient.http, curl and the V2 REST spec's examples,
against a real server: scores equal to gRPC Predict's for the same rows, the same log, errors and auth.

tritonclient runs in a subprocess, as in test_v2.py (its gevent client and numpy helpers stay out of ours).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sibyl.api.server import SibylServer
from tests.support.inproc import features_on, running_server
from tests.support.needs import missing
from tests.support.perf_analyzer import perf_analyzer
from tests.support.reference_rows import AMOUNTS, CONSUMER_IDS, predict_scores
from tests.support.servers import MissingBinaryError

TRITON_CLIENT = Path(__file__).parent / "programs" / "triton_http_tour.py"


def run_tritonclient_http(port: int) -> dict[str, Any]:
    if importlib.util.find_spec("tritonclient") is None or importlib.util.find_spec("geventhttpclient") is None:
        pytest.skip("pip install 'sibyl[test]' (tritonclient[http])")
    args = [sys.executable, str(TRITON_CLIENT), f"127.0.0.1:{port}", json.dumps(AMOUNTS), json.dumps(CONSUMER_IDS)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def curl(port: int, path: str, *args: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one curl call to the REST port (a subprocess: the server shares this loop)."""
    exe = shutil.which("curl")
    if exe is None:
        missing(MissingBinaryError("curl", "apt-get install curl"))
    command = [exe, "-sS", "-i", "--max-time", "20", *args, f"http://127.0.0.1:{port}{path}"]
    if body is not None:
        command[1:1] = ["--data-binary", "@-"]
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(body), 30)
    assert proc.returncode == 0, stderr.decode()
    head, _, payload = stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {key.lower(): value for key, _, value in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


async def post_json(port: int, path: str, doc: Any, *args: str) -> tuple[int, dict[str, Any]]:
    status, _, body = await curl(
        port, path, "-H", "content-type: application/json", *args, body=json.dumps(doc).encode()
    )
    return status, json.loads(body)


async def logged(log: Path, prediction_id: str, count: int) -> int:
    deadline = time.monotonic() + 5
    while log.read_text().count(prediction_id) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the shadow is scored and logged after the response
    return log.read_text().count(prediction_id)


async def test_stock_tritonclient_http_gets_the_scores_of_grpc_predict(store: Path) -> None:
    async with running_server(store, features=features_on(store)) as server:
        out = await asyncio.to_thread(run_tritonclient_http, server.http_port)
        expected = await predict_scores(server.port)
        expected_other = await predict_scores(server.port, "s@1")
        prediction_id = out["binary"]["response"]["parameters"]["prediction_id"]
        log_count = await logged(store / "predictions.jsonl", prediction_id, 2)
    assert out["live"] and out["ready"] and out["model_ready"] and not out["version_ready"]
    assert out["server"]["name"] == "sibyl" and "statistics" in out["server"]["extensions"]
    assert [(m["name"], m["state"]) for m in out["index"]] == [("p", "READY")]
    meta = out["metadata"]
    assert meta["versions"] == ["1"] and meta["outputs"] == [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]  # the whole row only
    assert out["config"]["max_batch_size"] > 0 and out["config"]["output"][0]["dims"] == [1]
    # Binary data in and out (tritonclient's default), JSON tensors, a pinned version, another model: gRPC's scores.
    for key in ("binary", "json", "version"):
        np.testing.assert_allclose(out[key]["scores"], expected, rtol=1e-6)
        assert out[key]["response"]["model_version"] == "m@1"
    np.testing.assert_allclose(out["other_model"]["scores"], expected_other, rtol=1e-6)
    assert out["json"]["response"]["outputs"][0]["data"] == out["json"]["scores"], "JSON numbers, not binary"
    assert "data" not in out["binary"]["response"]["outputs"][0]
    assert out["binary"]["response"]["id"] == "rest-"
    assert log_count == 2, "the REST call went through the prediction log, with its shadow"
    (stats,) = out["stats"]["model_stats"]
    assert (stats["name"], stats["execution_count"], stats["inference_count"]) == ("p", 4, 12)
    assert out["missing"][0] == "404" and "nope" in out["missing"][1]


# The V2 REST spec's examples, with names of the test model (amount, emb [N, 2], consumer_id).
SPEC_INFER = {
    "id": "42",
    "inputs": [
        {"name": "amount", "shape": [2], "datatype": "FP32", "data": [2.0, 1.0]},
        {"name": "emb", "shape": [2, 2], "datatype": "UINT32", "data": [[1, 2], [3, 4]]},  # nested, row-major
        {"name": "consumer_id", "shape": [2], "datatype": "BYTES", "data": ["c1", "nobody"]},
    ],
    "outputs": [{"name": "score"}],
}


async def test_curl_speaks_the_spec_examples_with_clear_errors(store: Path) -> None:
    async with running_server(store, features=features_on(store), server={"max_message_bytes": 4096}) as server:
        port = server.http_port
        calls: dict[str, Any] = {
            "live": (await curl(port, "/v2/health/live"))[0],
            "ready": (await curl(port, "/v2/health/ready"))[0],
            "server": json.loads((await curl(port, "/v2"))[2]),
            "model": json.loads((await curl(port, "/v2/models/p"))[2]),
            "model_v": json.loads((await curl(port, "/v2/models/p/versions/1"))[2]),
            "model_ready": (await curl(port, "/v2/models/p/versions/1/ready"))[0],
            "model_not_ready": await curl(port, "/v2/models/p/versions/9/ready"),
            "infer": await post_json(port, "/v2/models/p/infer", SPEC_INFER),
            "infer_v": await post_json(port, "/v2/models/p/versions/1/infer", SPEC_INFER),
            "unknown_model": await post_json(port, "/v2/models/nope/infer", SPEC_INFER),
            "unknown_version": await post_json(port, "/v2/models/p/versions/9/infer", SPEC_INFER),
            "unknown_output": await post_json(
                port, "/v2/models/p/infer", {**SPEC_INFER, "outputs": [{"name": "probs"}]}
            ),
            "short_data": await post_json(
                port, "/v2/models/p/infer", {"inputs": [{**SPEC_INFER["inputs"][0], "data": [1.0]}]}
            ),
            "bad_type": await post_json(
                port, "/v2/models/p/infer", {"inputs": [{**SPEC_INFER["inputs"][0], "data": ["x"]}]}
            ),
            "not_json": await curl(port, "/v2/models/p/infer", body=b"{inputs"),
            "no_inputs": await post_json(port, "/v2/models/p/infer", {"inputs": []}),
            "wrong_method": await curl(port, "/v2/models/p/infer"),
            "no_route": await curl(port, "/v1/predict"),
            "too_large": await curl(port, "/v2/models/p/infer", body=b" " * 5000),
            "timeout": await post_json(port, "/v2/models/p/infer", {**SPEC_INFER, "parameters": {"timeout": 1}}),
        }
        rows = [{"amount": 2.0, "emb[0]": 1.0, "emb[1]": 2.0}, {"amount": 1.0, "emb[0]": 3.0, "emb[1]": 4.0}]
        expected = await grpc_scores(server, rows, ["c1", "nobody"])
    assert calls["live"] == calls["ready"] == calls["model_ready"] == 200
    assert calls["model_not_ready"][0] == 400 and "not ready" in json.loads(calls["model_not_ready"][2])["error"]
    assert calls["server"]["name"] == "sibyl" and calls["model"] == calls["model_v"]
    status, answer = calls["infer"]
    assert status == 200 and answer["id"] == "42" and answer["model_name"] == "p" and answer["model_version"] == "m@1"
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("score", "FP32", [2, 1])
    np.testing.assert_allclose(output["data"], expected, rtol=1e-6)
    assert answer["parameters"]["role"] == "primary" and answer["parameters"]["prediction_id"]
    assert calls["infer_v"][1]["outputs"][0]["data"] == output["data"]

    def error(name: str) -> tuple[int, str]:
        status, doc = calls[name][0], calls[name][-1]
        return status, (json.loads(doc) if isinstance(doc, bytes) else doc)["error"]

    assert error("unknown_model")[0] == 404 and "'nope'" in error("unknown_model")[1]
    assert error("unknown_version")[0] == 404 and "m@9" in error("unknown_version")[1]
    assert error("unknown_output")[0] == 400 and "probs" in error("unknown_output")[1]
    assert error("short_data") == (400, "input 'amount': 1 values in data, shape [2] needs 2")
    assert error("bad_type")[0] == 400 and "FP32 numbers" in error("bad_type")[1]
    assert error("not_json")[0] == 400 and "not JSON" in error("not_json")[1]
    assert error("no_inputs")[0] == 400 and '"inputs"' in error("no_inputs")[1]
    assert error("wrong_method")[0] == 405 and calls["wrong_method"][1]["allow"] == "POST"
    assert error("no_route")[0] == 404 and "/v2/models/NAME" in error("no_route")[1]
    assert error("too_large")[0] == 413 and "max_message_bytes" in error("too_large")[1]
    assert error("timeout")[0] == 504 and "deadline" in error("timeout")[1]


async def grpc_scores(server: SibylServer, rows: list[dict[str, float]], consumers: list[str]) -> list[float]:
    import grpc

    from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
    from sibyl.v1.predict_pb2_grpc import PredictionServiceStub

    request = PredictRequest(
        predictor="p",
        rows=[FeatureRow(features=r, entities={"consumer_id": c}) for r, c in zip(rows, consumers, strict=True)],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        response = await PredictionServiceStub(channel).Predict(request, timeout=5)
    return list(response.results[0].scores)


def binary_request(amounts: list[float], consumers: list[str]) -> tuple[bytes, int]:
    """The binary-data extension by hand: JSON header, then each input's bytes in order."""
    amount = np.asarray(amounts, "<f4").tobytes()
    ids = b"".join(len(c).to_bytes(4, "little") + c.encode() for c in consumers)
    header = json.dumps(
        {
            "inputs": [
                {"name": "amount", "shape": [len(amounts)], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
                {
                    "name": "consumer_id",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(ids)},
                },
            ],
            "parameters": {"binary_data_output": True, "store_id": "s1"},
        }
    ).encode()
    return header + amount + ids, len(header)


async def test_binary_data_extension_with_curl(store: Path) -> None:
    async with running_server(store, features=features_on(store)) as server:
        body, header_length = binary_request(AMOUNTS, CONSUMER_IDS)
        args = [
            "-H",
            "content-type: application/octet-stream",
            "-H",
            f"inference-header-content-length: {header_length}",
        ]
        status, headers, payload = await curl(server.http_port, "/v2/models/p/infer", *args, body=body)
        short = await curl(server.http_port, "/v2/models/p/infer", *args, body=body[:-3])
        bad_length = await curl(
            server.http_port, "/v2/models/p/infer", "-H", "inference-header-content-length: 9999", body=body
        )
        expected = await predict_scores(server.port)
    assert status == 200, payload
    n = int(headers["inference-header-content-length"])
    answer = json.loads(payload[:n])
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == 4 * len(AMOUNTS)
    np.testing.assert_allclose(np.frombuffer(payload[n:], "<f4"), expected, rtol=1e-6)
    assert short[0] == 400 and "binary_data_size" in json.loads(short[2])["error"]
    assert bad_length[0] == 400 and "Inference-Header-Content-Length 9999" in json.loads(bad_length[2])["error"]


async def test_bearer_token_guards_rest_but_not_health(store: Path) -> None:
    async with running_server(store, security={"tokens": ["s3cret"]}) as server:
        port = server.http_port
        infer = {"inputs": [{"name": "amount", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
        without = await post_json(port, "/v2/models/p/infer", infer)
        wrong = await post_json(port, "/v2/models/p/infer", infer, "-H", "authorization: Bearer nope")
        right = await post_json(port, "/v2/models/p/infer", infer, "-H", "authorization: Bearer s3cret")
        metadata = (await curl(port, "/v2/models/p"))[0]
        health = (await curl(port, "/v2/health/ready"))[0]
        rejected = server.metrics.registry.get_sample_value("sibyl_rejected_total", {"reason": "unauthenticated"})
    assert without[0] == 401 and "no bearer token" in without[1]["error"]
    assert wrong[0] == 401 and "not accepted" in wrong[1]["error"]
    assert right[0] == 200 and len(right[1]["outputs"][0]["data"]) == 1
    assert metadata == 401 and health == 200
    assert rejected == 3


async def test_draining_answers_not_ready_and_unavailable(store: Path) -> None:
    async with running_server(store) as server:
        infer = {"inputs": [{"name": "amount", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
        before = (await curl(server.http_port, "/v2/health/ready"))[0]
        server.service.draining = True  # what stop() sets first
        ready, live = (
            (await curl(server.http_port, "/v2/health/ready"))[0],
            (await curl(server.http_port, "/v2/health/live"))[0],
        )
        status, answer = await post_json(server.http_port, "/v2/models/p/infer", infer)
        calls = server.metrics.registry.get_sample_value(
            "sibyl_requests_total", {"predictor": "p", "code": "UNAVAILABLE"}
        )
    assert (before, ready, live) == (200, 400, 200)
    assert status == 503 and "shutting down" in answer["error"]
    assert calls == 1, "REST calls are counted in the same metrics as gRPC calls"


async def test_rest_off_when_disabled(store: Path) -> None:
    async with running_server(store, http={"enabled": False}) as server:
        assert server.http_port == 0


async def test_perf_analyzer_runs_over_http_with_zero_errors(store: Path) -> None:
    """Triton's load tool over REST: it reads the config and statistics endpoints, then infers (binary data)."""
    if perf_analyzer() is None:  # scripts/test.sh installs it; in CI a missing one fails instead of skipping
        missing(MissingBinaryError("perf_analyzer", "bash scripts/setup_perf_analyzer.sh (sets up .bench-venvs/)"))
    async with running_server(store, features=features_on(store)) as server:
        args = [str(perf_analyzer()), "-m", "p", "-x", "1", "-i", "http", "-u", f"127.0.0.1:{server.http_port}"]
        args += ["--measurement-mode", "count_windows", "--measurement-request-count", "200"]
        args += ["--concurrency-range", "2", "--max-trials", "10", "--stability-percentage", "500"]
        done = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(done.communicate(), timeout=60)
        (stats,) = server.service.statistics("p")
    text = output.decode(errors="replace")
    assert done.returncode == 0, text
    assert "Throughput" in text
    assert stats.stats.calls > 0 and stats.stats.failed == 0
