"""`sibyl serve --workers 2`: both workers answer, metrics merge, a killed worker comes back, SIGTERM drains."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import serve_subprocess


def start_server(tmp_path: Path, workers: int) -> tuple[subprocess.Popen[str], int, int]:
    return serve_subprocess(tmp_path, "--metrics-port", "0", "--workers", str(workers))


def call(port: int, timeout: float = 5.0) -> tuple[grpc.StatusCode, str]:
    """One call on a fresh connection (SO_REUSEPORT balances connections, not calls)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})])
        try:
            _, rpc = PredictionServiceStub(channel).Predict.with_call(request, timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            return exc.code(), ""
        return grpc.StatusCode.OK, dict(rpc.trailing_metadata())["sibyl-worker"]


def requests_total(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r'^sibyl_requests_total\{code="OK",predictor="p"\} (\S+)$', text, re.M))


@pytest.mark.timeout(120)
def test_two_workers_share_the_port_merge_metrics_and_restart(tmp_path: Path) -> None:
    proc, port, metrics_port = start_server(tmp_path, workers=2)
    try:
        results = [call(port) for _ in range(40)]
        assert all(code == grpc.StatusCode.OK for code, _ in results)
        pids = {pid for _, pid in results}
        assert len(pids) == 2, f"one worker answered everything: {pids}"
        # Each worker applies its queued metric updates after its records batch (<= 20 ms after a call,
        # observability.deferred); a scrape answered by one worker reads the other's shared file as it is.
        deadline = time.monotonic() + 10
        while requests_total(metrics_port) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert requests_total(metrics_port) == 40

        victim = int(next(iter(pids)))
        os.kill(victim, signal.SIGKILL)
        new_pids: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (new_pids - pids):
            code, pid = call(port)
            if code == grpc.StatusCode.OK:
                new_pids.add(pid)
        assert new_pids - pids, "the killed worker was not replaced"
        assert str(victim) not in new_pids
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
