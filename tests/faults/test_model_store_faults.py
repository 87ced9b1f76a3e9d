"""Model store faults under load: the S3 server down during polls, then back; corrupt versions published."""

from __future__ import annotations

from pathlib import Path

import pytest

from sibyl.api.server import SibylServer
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore, S3Store
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import Load, Outcome, logged_ids_from_file, report
from tests.support.inproc import running_server
from tests.support.onnxgen import logistic_onnx, publish_logistic, publish_raw
from tests.support.servers import S3Server, make_bucket

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


def request(i: int) -> PredictRequest:
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i % 7)})])


def answered_by(version: str) -> object:
    def healthy(o: Outcome) -> bool:
        return o.response is not None and o.response.results[0].version == version

    return healthy


def sample(server: SibylServer, name: str, labels: dict[str, str] | None = None) -> float:
    return server.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def wait_metric_above(load: Load, server: SibylServer, name: str, labels: dict[str, str], floor: float) -> None:
    await load.wait_for(lambda o: sample(server, name, labels) > floor, run=1, timeout_s=20)


async def test_s3_down_during_polls_then_back(s3_server: S3Server, aws_env: None, tmp_path: Path) -> None:
    s3_server.start()
    bucket = f"faults-{tmp_path.name[-20:].lower().replace('_', '-')}"
    make_bucket(s3_server.endpoint_url, bucket)
    catalog = Catalog(S3Store(bucket, "prod", s3_server.endpoint_url, "us-east-1"))
    publish_logistic(catalog, "m", "1")
    catalog.promote("p", "m@1")
    store = {"s3_endpoint_url": s3_server.endpoint_url, "poll_interval_s": 0.2}
    try:
        async with running_server(tmp_path, f"s3://{bucket}/prod", model_store=store) as server:
            async with Load(f"127.0.0.1:{server.port}", request) as load:
                await load.settle()
                errors = sample(server, "sibyl_model_store_errors_total")
                load.mark("fault")
                s3_server.stop()
                await wait_metric_above(load, server, "sibyl_model_store_errors_total", {}, errors)  # a poll failed
                await load.settle(50)
                poll_errors = sample(server, "sibyl_model_store_errors_total") - errors
                load.mark("repair")
                s3_server.start()
                publish_logistic(catalog, "m", "2", weights=[0.9] * 5)
                catalog.promote("p", "m@2")
                load.mark("v2 promoted")
                await load.wait_for(answered_by("2"))
                recovery = {"first v2 answer after S3 is back": load.first(answered_by("2"), "repair")}
    finally:
        s3_server.start()  # the session server must be running for the next test
    print(f"\n[s3 down] failed polls while down: {poll_errors:.0f}")
    report("s3 down during polls", load, logged_ids_from_file([tmp_path / "predictions.jsonl"]), recovery)
    assert set(load.codes()) == {"OK"}  # the served version never depended on the store being up


async def test_corrupt_versions_never_serve(tmp_path: Path) -> None:
    catalog = Catalog(FileStore(tmp_path / "store"))
    publish_logistic(catalog, "m", "1")
    catalog.promote("p", "m@1")
    failed = {"model": "m", "outcome": "failed"}
    async with running_server(tmp_path) as server:
        async with Load(f"127.0.0.1:{server.port}", request) as load:
            await load.settle()
            load.mark("fault")
            publish_raw(catalog, "m", "2", b"\x08\x01 not an onnx model")  # garbage with a matching checksum
            catalog.promote("p", "m@2")
            await wait_metric_above(load, server, "sibyl_model_loads_total", failed, 0)
            good = logistic_onnx([0.2] * 5)
            publish_raw(catalog, "m", "3", good[:-1] + bytes([good[-1] ^ 1]), sha_of=good)  # tampered after publishing
            catalog.promote("p", "m@3")
            await wait_metric_above(load, server, "sibyl_model_loads_total", failed, 1)
            await load.settle(50)
            during = load.codes(load.marks["fault"])
            primary_during = server.registry.predictor("p").primary
            load.mark("repair")
            publish_logistic(catalog, "m", "4", weights=[0.7] * 5)
            catalog.promote("p", "m@4")
            await load.wait_for(answered_by("4"))
            recovery = {"first v4 answer after a good publish": load.first(answered_by("4"), "repair")}
    report("corrupt model published", load, logged_ids_from_file([tmp_path / "predictions.jsonl"]), recovery)
    versions = {o.response.results[0].version for o in load.outcomes if o.response is not None}
    assert versions == {"1", "4"}, versions  # 2 and 3 never answered
    assert primary_during == "m@1" and set(during) == {"OK"}
