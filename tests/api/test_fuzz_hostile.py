"""Hostile input through a real `sibyl serve` (a subprocess, server default limits): hypothesis drives Predict and
ModelInfer with the hard cases (tests/api/hostile.py), and the issue-13 reports are regression tests.

Properties: only OK / INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED; every call returns within a bound
proportional to its size (2 s + 1 s per MB: a hang detector, not a benchmark); health checks sent every 20 ms
from another thread during the whole module all answer within 2 s; the server's RSS (read from /proc) stays
bounded. Default ~200 examples per endpoint; --runslow: 3,000.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.v1.predict_pb2 import DenseRows, FeatureRow, FloatVector, PredictRequest
from tests.api.hostile import ROWS, delimited, infer_bytes, predict_bytes
from tests.support.inproc import serve_subprocess

ALLOWED = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"}
PREDICT = "/sibyl.v1.PredictionService/Predict"
INFER = "/inference.GRPCInferenceService/ModelInfer"
MAX_MESSAGE = 16 * 2**20
RSS_GROWTH_LIMIT = 768 * 2**20  # generous: arenas keep what 16 MiB messages took; the old code took gigabytes
OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
Tensor = v2.ModelInferRequest.InferInputTensor


class Server:
    """The server process, and a thread checking its health every 20 ms and sampling its RSS."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.target = proc, f"127.0.0.1:{port}"
        self.health_failures: list[str] = []
        self.health_worst_s = 0.0
        self.health_checks = 0
        self.rss_start = self.rss_peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self._stop.wait(0.02):
                start = time.monotonic()
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                    if reply.status != health_pb2.HealthCheckResponse.SERVING:
                        self.health_failures.append(f"status {reply.status}")
                except grpc.RpcError as exc:
                    self.health_failures.append(exc.code().name)  # type: ignore[attr-defined]
                self.health_worst_s = max(self.health_worst_s, time.monotonic() - start)
                self.health_checks += 1
                self.rss_peak = max(self.rss_peak, self.rss())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hostile")
    proc, port, _ = serve_subprocess(
        root, "--metrics-port", "0", SIBYL_SERVER__MAX_MESSAGE_BYTES=str(MAX_MESSAGE), SIBYL_PREDLOG__SINK="none"
    )
    running = Server(proc, port)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target, options=OPTIONS) as ch:
        yield ch


def call(channel: grpc.Channel, method: str, data: bytes) -> tuple[str, str]:
    """(status name, details); fails when the call outlives 2 s + 1 s per MB (a hang, not a slow call)."""
    bound = 2.0 + len(data) / 1e6
    start = time.monotonic()
    try:
        channel.unary_unary(method)(data, timeout=bound)
        code, details = "OK", ""
    except grpc.RpcError as exc:
        code, details = exc.code().name, exc.details() or ""  # type: ignore[attr-defined]
    elapsed = time.monotonic() - start
    assert code != "DEADLINE_EXCEEDED", f"{len(data)} bytes took over {bound:.1f} s"
    assert elapsed < bound + 1.0
    return code, details


def budget(config: pytest.Config) -> settings:
    return settings(
        max_examples=3000 if config.getoption("--runslow") else 200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        print_blob=True,
    )


@pytest.mark.parametrize(("method", "strategy"), [(PREDICT, predict_bytes), (INFER, infer_bytes)], ids=["v1", "v2"])
def test_fuzzed_requests_get_only_caller_codes_in_bounded_time(
    channel: grpc.Channel, server: Server, request: pytest.FixtureRequest, method: str, strategy: object
) -> None:
    seen: Counter[str] = Counter()

    @budget(request.config)
    @given(strategy)  # type: ignore[arg-type]
    def check(data: bytes) -> None:
        code, details = call(channel, method, data)
        seen[code] += 1
        assert code in ALLOWED, f"{code} ({details}) for {len(data)} bytes: {data[:200]!r}"

    check()
    print(f"\n{method}: {dict(seen)}")
    assert seen["OK"] and seen["INVALID_ARGUMENT"]  # the generator reaches both deep and shallow
    assert server.proc.poll() is None


# ---- the issue-13 reports, one by one (the V2 ones also with the stock tritonclient, below)
def tensor(shape: list[int], name: str = "x") -> Tensor:
    return Tensor(name=name, datatype="FP32", shape=shape)


def v2_bytes(*inputs: Tensor, raw: list[bytes] | None = None) -> bytes:
    return v2.ModelInferRequest(model_name="p", inputs=list(inputs), raw_input_contents=raw or []).SerializeToString()


REPORTED = {
    "v2 [2**32, 2**32], no contents": (INFER, v2_bytes(tensor([2**32, 2**32]))),
    "v2 [0, 10**6]": (INFER, v2_bytes(tensor([0, 10**6]))),
    "v2 [2**62, 4] (was a ValueError)": (INFER, v2_bytes(tensor([2**62, 4]))),
    "v2 [1, 2**63 - 1]": (INFER, v2_bytes(tensor([1, 2**63 - 1]))),
    "v2 5,000 tensors of one name": (
        INFER,
        v2_bytes(*[Tensor(name="amount", datatype="FP32", shape=[1])] * 5000, raw=[b"\0" * 4] * 5000),
    ),
    "v2 BYTES [10**6] of empty ids": (
        INFER,
        v2_bytes(Tensor(name="consumer_id", datatype="BYTES", shape=[10**6]), raw=[b"\0" * 4 * 10**6]),
    ),
    "v1 map row, a ~1 MB vector": (
        PREDICT,
        PredictRequest(
            predictor="p", rows=[FeatureRow(vectors={"emb": FloatVector(values=np.ones(250_000, "<f4"))})]
        ).SerializeToString(),
    ),
    "v1 map rows, a new name per row": (
        PREDICT,
        PredictRequest(
            predictor="p", rows=[FeatureRow(features={f"f{i}": 1}) for i in range(ROWS)]
        ).SerializeToString(),
    ),
    "v1 dense, 20,000 names, the duplicate last": (
        PREDICT,
        PredictRequest(
            predictor="p",
            dense=DenseRows(feature_names=[f"c{i}" for i in range(20_000)] + ["c0"], values=b"\0" * 84_004, num_rows=1),
        ).SerializeToString(),
    ),
    "v1 dense, 10,000 rows and no columns": (
        PREDICT,
        PredictRequest(predictor="p", dense=DenseRows(num_rows=ROWS)).SerializeToString(),
    ),
    "v1 100,000 empty rows": (PREDICT, PredictRequest(predictor="p").SerializeToString() + delimited(4, b"") * 100_000),
}


@pytest.mark.parametrize("case", sorted(REPORTED))
def test_reported_cases_are_refused_at_once(channel: grpc.Channel, server: Server, case: str) -> None:
    method, data = REPORTED[case]
    code, details = call(channel, method, data)
    assert code == "INVALID_ARGUMENT", (code, details)
    assert "server.max_" in details or "twice" in details or "no rows" in details or "column" in details, details
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2.0)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_message_over_the_limit_is_resource_exhausted_on_both_endpoints(channel: grpc.Channel) -> None:
    big = b"\0" * (MAX_MESSAGE + 1)
    dense = PredictRequest(predictor="p", dense=DenseRows(feature_names=["amount"], values=big, num_rows=1))
    assert call(channel, PREDICT, dense.SerializeToString())[0] == "RESOURCE_EXHAUSTED"
    assert call(channel, INFER, v2_bytes(tensor([1], "amount"), raw=[big]))[0] == "RESOURCE_EXHAUSTED"


TRITON_CLIENT = Path(__file__).parent / "programs" / "triton_grpc_hostile_shapes.py"


def test_reported_v2_cases_with_the_stock_tritonclient(server: Server) -> None:
    if importlib.util.find_spec("tritonclient") is None:  # run in a subprocess: its protos clash with ours
        pytest.skip("pip install 'sibyl[test]' (tritonclient)")
    done = subprocess.run(
        [sys.executable, str(TRITON_CLIENT), server.target], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out.pop("live") is True
    assert out == dict.fromkeys(out, "StatusCode.INVALID_ARGUMENT"), out
    assert set(out) == {"huge", "zero", "overflow", "negative", "dims", "duplicates"}


def test_health_answered_and_rss_stayed_bounded_throughout(server: Server) -> None:
    """Last in the module: every health check sent during the tests above answered SERVING within 2 s."""
    worst_ms, peak_mib = server.health_worst_s * 1000, server.rss_peak / 2**20
    print(
        f"\nhealth: {server.health_checks} checks, worst {worst_ms:.0f} ms; RSS {server.rss_start / 2**20:.0f} -> "
        f"peak {peak_mib:.0f} MiB"
    )
    assert server.health_checks > 0 and not server.health_failures, server.health_failures[:5]
    assert server.rss_peak - server.rss_start < RSS_GROWTH_LIMIT
