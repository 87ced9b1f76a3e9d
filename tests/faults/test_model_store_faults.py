"""Model store faults under load: the S3 store unreachable under open-loop load through a real `sibyl serve` then
back with a new version; corrupt versions published (in process, closed loop). The store is down 5 s in CI (ten
0.5 s polls fail: the same path as a longer outage) and 10 s with --runslow (the runs in docs/reliability.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sibyl.api.server import SibylServer
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore, S3Store
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import Load, OpenLoad, Outcome, Shot, logged_ids_from_file, report
from tests.faults.scenario import Figures, log_tail, run_fault, start_server, stop
from tests.support.inproc import running_server
from tests.support.onnxgen import logistic_onnx, publish_logistic, publish_raw
from tests.support.servers import S3Server, make_bucket

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


def request(i: int) -> PredictRequest:
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i % 7)})])


def answered_by(version: str) -> Callable[[Outcome | Shot], bool]:
    def healthy(o: Outcome | Shot) -> bool:
        return o.response is not None and o.response.results[0].version == version

    return healthy


def sample(server: SibylServer, name: str, labels: dict[str, str] | None = None) -> float:
    return server.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def wait_metric_above(load: Load, server: SibylServer, name: str, labels: dict[str, str], floor: float) -> None:
    await load.wait_for(lambda o: sample(server, name, labels) > floor, run=1, timeout_s=20)


async def test_s3_store_unreachable_under_open_loop_load(
    s3_server: S3Server, aws_env: None, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """The S3 model store stopped for 5 s (10 s with --runslow) under 100 calls/s through a real `sibyl serve`: every
    call answers OK with the version already loaded; once S3 is back, a version promoted then serves within a few
    polls."""
    s3_server.start()
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server.endpoint_url, bucket)
    catalog = Catalog(S3Store(bucket, "prod", s3_server.endpoint_url, "us-east-1"))
    publish_logistic(catalog, "m", "1")
    catalog.promote("p", "m@1")
    env = {
        "SIBYL_MODEL_STORE__URL": f"s3://{bucket}/prod",
        "SIBYL_MODEL_STORE__S3_ENDPOINT_URL": s3_server.endpoint_url,
        "SIBYL_MODEL_STORE__POLL_INTERVAL_S": "0.5",
        "SIBYL_METRICS__PORT": "0",
    }
    proc, port = start_server(tmp_path, **env)

    async def unreachable(_: OpenLoad) -> None:
        await asyncio.to_thread(s3_server.stop)

    async def back_with_v2(_: OpenLoad) -> None:
        await asyncio.to_thread(s3_server.start)
        await asyncio.to_thread(publish_logistic, catalog, "m", "2", [0.9] * 5)
        await asyncio.to_thread(catalog.promote, "p", "m@2")

    v2 = answered_by("2")
    fault_s = 10.0 if pytestconfig.getoption("--runslow") else 5.0
    try:
        load = await run_fault(port, request, unreachable, back_with_v2, healthy=v2, fault_s=fault_s)
    finally:
        s3_server.start()  # the session server must be running for the next test
        code = await asyncio.to_thread(stop, proc)
    figures = Figures(f"s3 model store unreachable {fault_s:.0f} s", load, healthy=v2)
    print("\n" + figures.row())
    assert code == 0, log_tail(tmp_path)
    assert not figures.failed, f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert {s.response.results[0].version for s in figures.during if s.response} == {"1"}
    assert figures.recovery_s() is not None, "v2 never served after S3 came back"
    versions = [s.response.results[0].version for s in sorted(load.shots, key=lambda s: s.t) if s.response]
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"}, "served v2 before it was promoted"
    logged = logged_ids_from_file([tmp_path / "predictions.jsonl"])
    assert load.answered() <= logged, f"{len(load.answered() - logged)} answered predictions missing from the log"


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
