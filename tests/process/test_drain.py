"""SIGTERM during a load loop: the server first says NOT_SERVING (gRPC health and REST readiness) while it still
answers, then refuses new calls with UNAVAILABLE (with the `sibyl-worker` trailer, like every answer), lets the
calls in flight finish and closes its connections: callers that keep calling until the process is gone see OK or
UNAVAILABLE, never CANCELLED; every answered prediction is in the log, and the server exits 0."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import serve_subprocess, serve_subprocess_serving

REQUEST = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})] * 20)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("gil_slice_ms", ["0", "0.2"], ids=["default", "gil-pacing"])  # sibyl.gil: paced writers
def test_sigterm_drains_in_flight_and_flushes_the_log(tmp_path: Path, gil_slice_ms: str) -> None:
    log_path = tmp_path / "predictions.jsonl"
    proc, port, _ = serve_subprocess(
        tmp_path, SIBYL_METRICS__ENABLED="false", SIBYL_SERVER__GRACE_S="5", SIBYL_SERVER__GIL_SLICE_MS=gil_slice_ms
    )

    answered: list[str] = []
    failed: list[tuple[str, float, str]] = []  # code, when, the sibyl-worker trailer
    sigterm_at: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        # Calls go on until the process has exited: a call the shutdown dropped (CANCELLED) would show.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = PredictionServiceStub(channel)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    response = stub.Predict(REQUEST, timeout=5)
                    with lock:
                        answered.append(response.prediction_id)
                except grpc.RpcError as exc:
                    worker = dict(exc.trailing_metadata() or ()).get("sibyl-worker", "")  # type: ignore[attr-defined]
                    with lock:
                        failed.append((exc.code().name, time.monotonic(), worker))  # type: ignore[attr-defined]
                    time.sleep(0.01)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    while len(answered) < 200:
        time.sleep(0.01)
    sigterm_at.append(time.monotonic())
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=40)
    assert proc.wait(timeout=30) == 0

    assert {code for code, _, _ in failed} <= {"UNAVAILABLE"}, failed
    assert all(at >= sigterm_at[0] for _, at, _ in failed), "a call failed before shutdown began"
    # A refusal is an answer: it names the process (a connection that ended or was refused names none).
    refusals = [worker for _, _, worker in failed if worker]
    assert all(worker == str(proc.pid) for worker in refusals), refusals
    logged = {json.loads(line)["prediction_id"] for line in log_path.read_text().splitlines()}
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} answered predictions missing from the log"
    print(
        f"drain: answered {len(answered)}, failed {len(failed)} (UNAVAILABLE after SIGTERM; {len(refusals)} "
        f"refusals), logged {len(logged)}"
    )


def ready_over_http(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.timeout(90)
def test_not_serving_comes_before_any_refusal(tmp_path: Path) -> None:
    """For drain_s after SIGTERM, health and readiness say the server is going while calls are still answered:
    clients that watch health move before anything is refused (docs/deploy.md#graceful-shutdown)."""
    proc, serving = serve_subprocess_serving(tmp_path, SIBYL_METRICS__ENABLED="false", SIBYL_SERVER__DRAIN_S="30")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{serving.port}") as channel:
            stub, health = PredictionServiceStub(channel), health_pb2_grpc.HealthStub(channel)
            before = health.Check(health_pb2.HealthCheckRequest(service="sibyl.v1.PredictionService"), timeout=5)
            assert before.status == health_pb2.HealthCheckResponse.SERVING
            assert ready_over_http(serving.http_port) == 200
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            while health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status != not_serving:
                assert time.monotonic() < deadline, "health still SERVING after SIGTERM"
                time.sleep(0.02)
            after = health.Check(health_pb2.HealthCheckRequest(service="sibyl.v1.PredictionService"), timeout=5)
            assert after.status == not_serving
            assert ready_over_http(serving.http_port) == 400  # KServe V2: 400 = not ready
            response, call = stub.Predict.with_call(REQUEST, timeout=5)  # still answered, with the trailer
            assert response.prediction_id and dict(call.trailing_metadata())["sibyl-worker"] == str(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
