"""Admission control: a burst over max_in_flight gets RESOURCE_EXHAUSTED before any work; admitted calls succeed.

The slow path: a real ONNX model with wide hidden layers (tens of ms per call in onnxruntime, which releases
the GIL) run off the event loop (offload_rows=1), so admitted calls hold their slot while new ones arrive.
"Before any work" is checked through the metrics, not the clock: rejected calls never reach inference.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import grpc
import numpy as np
from onnx import helper, numpy_helper

from sibyl.api.server import SibylServer
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import OutputSpec
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import DenseRows, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server
from tests.support.onnxgen import FEATURES, probability_model

MAX_IN_FLIGHT = 4
BURST = 60
ROWS = 256
WIDTH = 1024  # hidden units: 2 x 256 x 1024 x 1024 multiply-adds per call


def slow_onnx(inputs: int) -> bytes:
    rng = np.random.default_rng(0)
    shapes = {"w1": (inputs, WIDTH), "w2": (WIDTH, WIDTH), "w3": (WIDTH, 1)}
    weights = [
        numpy_helper.from_array((rng.standard_normal(s) / s[0]).astype(np.float32), n) for n, s in shapes.items()
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("MatMul", ["r2", "w3"], ["z"]),
    ]
    return probability_model("slow", nodes, weights, inputs)


def make_slow_store(root: Path) -> None:
    catalog = Catalog(FileStore(root))
    catalog.publish(
        "slow", "1", slow_onnx(sum(f.dim for f in FEATURES)), FEATURES, OutputSpec(name="probabilities", column=1)
    )
    catalog.promote("p", "slow@1")


PRIMARY = {"model": "slow", "version": "1", "role": "primary"}


def sample(server: SibylServer, name: str, labels: dict[str, str] | None = None) -> float:
    return server.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def test_burst_over_max_in_flight_is_shed_fast_and_admitted_calls_succeed(tmp_path: Path) -> None:
    make_slow_store(tmp_path / "store")
    values = np.random.default_rng(0).random((ROWS, 3), np.float32).tobytes()
    request = PredictRequest(
        predictor="p", dense=DenseRows(feature_names=["amount", "age", "rating"], values=values, num_rows=ROWS)
    )
    outcomes: list[tuple[grpc.StatusCode, float]] = []
    async with running_server(
        tmp_path,
        server={"max_in_flight": MAX_IN_FLIGHT, "offload_rows": 1, "max_rows": ROWS, "inference_threads": 1},
        predlog={"sink": "none", "log_features": False},
    ) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            await stub.Predict(request, timeout=10)  # connection up, model warm

            async def call() -> None:
                start = time.perf_counter()
                try:
                    await stub.Predict(request, timeout=30)
                    outcomes.append((grpc.StatusCode.OK, time.perf_counter() - start))
                except grpc.aio.AioRpcError as exc:
                    outcomes.append((exc.code(), time.perf_counter() - start))

            inferences_before = sample(server, "sibyl_inference_seconds_count", PRIMARY)
            await asyncio.gather(*(call() for _ in range(BURST)))
            inferences = sample(server, "sibyl_inference_seconds_count", PRIMARY) - inferences_before
            rejected = sample(server, "sibyl_rejected_total", {"reason": "overload"})

            # Once the burst is over the server admits again.
            after = await stub.Predict(request, timeout=10)
            in_flight = sample(server, "sibyl_in_flight_requests")

    by_code: dict[str, list[float]] = {}
    for code, seconds in outcomes:
        by_code.setdefault(code.name, []).append(seconds)
    ok, shed = by_code.get("OK", []), by_code.get("RESOURCE_EXHAUSTED", [])
    print(
        f"\noverload: burst {BURST} at max_in_flight {MAX_IN_FLIGHT}: "
        + ", ".join(f"{k} {len(v)} (median {statistics.median(v) * 1000:.1f} ms)" for k, v in by_code.items())
    )
    assert set(by_code) <= {"OK", "RESOURCE_EXHAUSTED"}, by_code.keys()
    assert ok and shed, by_code.keys()
    assert rejected == len(shed)  # every shed call was counted as an overload rejection ...
    assert inferences == len(ok)  # ... and never reached inference: only admitted calls did work
    assert after.num_rows == ROWS and in_flight == 0
