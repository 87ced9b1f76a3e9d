"""Against a real S3 API server: publish v1, serve, publish v2 + promote under load → switch with zero failed
calls; a corrupt v3 promoted → v2 keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import boto3
import grpc
import pytest

from sibyl.models.catalog import Catalog
from sibyl.models.store import S3Store
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server
from tests.support.onnxgen import publish_logistic, publish_raw
from tests.support.servers import S3Server


@pytest.fixture
def s3_catalog(s3_server: S3Server, aws_env: None, tmp_path: Path) -> tuple[Catalog, str]:
    bucket = f"models-{abs(hash(tmp_path.name)) % 100000}"
    boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    return Catalog(S3Store(bucket, "prod", s3_server.endpoint_url, "us-east-1")), bucket


@pytest.mark.timeout(120)
async def test_hot_swap_under_load_with_zero_failures(
    s3_server: S3Server, s3_catalog: tuple[Catalog, str], tmp_path: Path
) -> None:
    catalog, bucket = s3_catalog
    publish_logistic(catalog, "m", "1")
    catalog.promote("p", "m@1")
    seen: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def client_loop(port: int) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = PredictionServiceStub(channel)
            request = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})])
            while not stop.is_set() and len(seen) < 50_000:
                try:
                    response = await stub.Predict(request, timeout=5)
                    seen.append(response.results[0].version)
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")
                await asyncio.sleep(0)

    async def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.05)

    store_url = f"s3://{bucket}/prod"
    async with running_server(
        tmp_path, store_url, model_store={"s3_endpoint_url": s3_server.endpoint_url, "poll_interval_s": 0.2}
    ) as server:
        loop_task = asyncio.create_task(client_loop(server.port))
        await wait_for(lambda: len(seen) > 20)
        publish_logistic(catalog, "m", "2", weights=[0.9] * 5)
        catalog.promote("p", "m@2")
        await wait_for(lambda: seen and seen[-1] == "2")
        publish_raw(catalog, "m", "3", b"\x08\x01garbage that is not onnx")
        catalog.promote("p", "m@3")
        before = server.metrics.registry.get_sample_value(
            "sibyl_model_loads_total", {"model": "m", "outcome": "failed"}
        )
        await wait_for(
            lambda: (
                server.metrics.registry.get_sample_value("sibyl_model_loads_total", {"model": "m", "outcome": "failed"})
                != before
            )
        )
        count = len(seen)
        await wait_for(lambda: len(seen) > count + 20)
        stop.set()
        await loop_task
        assert server.registry.predictor("p").primary == "m@2"
    assert failures == []
    switch = seen.index("2")
    assert set(seen[:switch]) == {"1"} and set(seen[switch:]) == {"2"}, "versions must switch once, never back"
