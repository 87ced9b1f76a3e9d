"""Steady mixed load for a bounded time while RSS and open file descriptors are sampled: no sustained growth.

Default ~10 s; --runslow runs 120 s. Mixed traffic: map rows, dense rows, streams, caller errors, and a fresh
channel now and then (connections are where descriptors leak). Every answered prediction must be in the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from sibyl.v1.predict_pb2 import DenseRows, FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import publish_models, running_server, write_features

RSS_LIMIT = 48 * 2**20  # growth from the early to the late part of the run
FD_LIMIT = 16
CLIENTS = 8
EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def mixed_request(i: int) -> PredictRequest:
    kind = i % 10
    if kind < 5:
        rows = [
            FeatureRow(features={"amount": float(r)}, entities={"store_id": f"s{r % 3}"}) for r in range(1 + i % 20)
        ]
        return PredictRequest(request_id=f"r{i}", predictor="p", context={"consumer_id": f"c{i % 50}"}, rows=rows)
    if kind < 8:
        n = 1 + i % 100
        values = np.random.default_rng(i).random((n, 3), np.float32).tobytes()
        dense = DenseRows(feature_names=["amount", "age", "rating"], values=values, num_rows=n)
        return PredictRequest(request_id=f"r{i}", predictor="p", dense=dense, extra_models=["s@1"] if kind == 7 else [])
    if kind == 8:
        return PredictRequest(request_id=f"r{i}", predictor="nope", rows=[FeatureRow()])  # NOT_FOUND
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"typo": 1.0})])  # INVALID


async def test_steady_load_does_not_leak(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    duration = 120.0 if request.config.getoption("--runslow") else 10.0
    publish_models(tmp_path / "store")
    features = write_features(
        tmp_path / "features.jsonl",
        [{"entity": "consumer_id", "id": f"c{i}", "features": {"age": 20.0 + i}} for i in range(50)],
    )
    answered: set[str] = set()
    codes: dict[str, int] = {}
    samples: list[tuple[float, int, int]] = []
    async with running_server(
        tmp_path, features={"backend": "memory", "memory_file": str(features)}, server={"max_in_flight": 4096}
    ) as server:
        target = f"127.0.0.1:{server.port}"
        start = time.monotonic()
        stop_at = start + duration

        async def client(worker: int) -> None:
            i = worker
            while time.monotonic() < stop_at:
                async with grpc.aio.insecure_channel(target) as channel:  # a fresh connection every 200 calls
                    stub = PredictionServiceStub(channel)
                    for _ in range(200):
                        if time.monotonic() >= stop_at:
                            return
                        i += CLIENTS
                        if i % 50 == worker:  # a short stream now and then
                            requests = [mixed_request(i + k) for k in range(5)]
                            async for item in stub.PredictStream(iter(requests), timeout=10):
                                name = "OK" if item.HasField("response") else item.error.code_name
                                codes[name] = codes.get(name, 0) + 1
                                if item.HasField("response"):
                                    answered.add(item.response.prediction_id)
                            continue
                        try:
                            response = await stub.Predict(mixed_request(i), timeout=10)
                        except grpc.aio.AioRpcError as exc:
                            codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                            assert exc.code() in EXPECTED, exc
                            continue
                        codes["OK"] = codes.get("OK", 0) + 1
                        answered.add(response.prediction_id)

        async def sampler() -> None:
            while time.monotonic() < stop_at:
                samples.append((time.monotonic() - start, rss_bytes(), open_fds()))
                await asyncio.sleep(0.25)

        await asyncio.gather(sampler(), *(client(w) for w in range(CLIENTS)))
        await asyncio.sleep(0.2)
        fds_at_end = open_fds()

    # Ignore the first quarter (warm-up: arenas, caches, first connections); compare early vs late medians.
    steady = [s for s in samples if s[0] >= duration / 4]
    third = max(1, len(steady) // 3)
    rss_growth = statistics.median(s[1] for s in steady[-third:]) - statistics.median(s[1] for s in steady[:third])
    fd_growth = max(s[2] for s in steady[-third:]) - min(s[2] for s in steady[:third])
    calls = sum(codes.values())
    records = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    logged = {r.get("prediction_id") or r["predictionId"] for r in records if r["role"] == "ROLE_PRIMARY"}
    print(
        f"\nsoak {duration:.0f} s: {calls} calls ({calls / duration:.0f}/s) {codes}; "
        f"RSS {samples[0][1] / 2**20:.0f} -> {samples[-1][1] / 2**20:.0f} MiB (steady growth {rss_growth / 2**20:+.1f}); "
        f"fds {samples[0][2]} -> {samples[-1][2]} (steady growth {fd_growth:+d}, after stop {fds_at_end}); "
        f"logged {len(answered & logged)}/{len(answered)} answered"
    )
    assert set(codes) <= {c.name for c in EXPECTED}
    assert codes.get("OK", 0) > 100
    assert rss_growth < RSS_LIMIT
    assert fd_growth < FD_LIMIT
    assert answered <= logged, f"{len(answered - logged)} answered predictions missing from the log"
