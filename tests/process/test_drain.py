"""SIGTERM during a load loop: calls fail only with UNAVAILABLE once shutdown began, every answered
prediction is in the log, and the server exits 0."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import serve_subprocess


@pytest.mark.timeout(90)
def test_sigterm_drains_in_flight_and_flushes_the_log(tmp_path: Path) -> None:
    log_path = tmp_path / "predictions.jsonl"
    proc, port, _ = serve_subprocess(tmp_path, SIBYL_METRICS__ENABLED="false", SIBYL_SERVER__GRACE_S="5")

    answered: list[str] = []
    failed: list[tuple[str, float]] = []
    sigterm_at: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = PredictionServiceStub(channel)
            request = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})] * 20)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    response = stub.Predict(request, timeout=5)
                    with lock:
                        answered.append(response.prediction_id)
                except grpc.RpcError as exc:
                    with lock:
                        failed.append((exc.code().name, time.monotonic()))
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        return

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

    assert {code for code, _ in failed} <= {"UNAVAILABLE"}, failed
    assert all(at >= sigterm_at[0] for _, at in failed), "a call failed before shutdown began"
    logged = {json.loads(line)["prediction_id"] for line in log_path.read_text().splitlines()}
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} answered predictions missing from the log"
    print(f"drain: answered {len(answered)}, failed {len(failed)} (UNAVAILABLE after SIGTERM), logged {len(logged)}")
