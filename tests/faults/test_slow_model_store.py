"""The S3 model store slow or broken rather than down, behind tests/support/latency_proxy, while a new version is
promoted, under steady open-loop load (100 calls/s, 2 s deadline each) through a real `sibyl serve`:

* downloads at 1 KB/s (a ~32 KB model: ~30 s to read) with model_store.s3_read_timeout_s at 3 s,
* every GET of the new model.onnx answered HTTP 500,
* every GET of the new model.onnx cut off after 1,000 bytes of its body.

Each time the new version's load fails (counted, sibyl_model_loads_total{outcome="failed"}) and is tried again at
later polls, the version before it keeps answering every call, and the new one serves within a few polls of the
store being healthy again. No call fails; every answered prediction is logged."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from sibyl.models.catalog import Catalog
from sibyl.models.manifest import OutputSpec
from sibyl.models.store import S3Store
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import OpenLoad, logged_ids_from_file, p99_ms
from tests.faults.scenario import log_tail, stop
from tests.faults.scrape import scrape, value
from tests.support.inproc import serve_subprocess
from tests.support.latency_proxy import LatencyProxy
from tests.support.onnxgen import FEATURES, logistic_onnx
from tests.support.servers import S3Server, make_bucket
from tests.support.workers import answering

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]
PADDING = 32 * 1024  # bytes of doc string: ~32 s to download at 1 KB/s
READ_TIMEOUT_S = 3.0


def request(i: int) -> PredictRequest:
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i % 7)})])


def padded_model(weight: float) -> bytes:
    """A valid logistic model made ~PADDING bytes larger by its doc string."""
    model = onnx.load_from_string(logistic_onnx([weight] * 5))
    model.doc_string = "x" * PADDING
    return model.SerializeToString()


def publish(catalog: Catalog, version: str) -> None:
    catalog.publish(
        "m", version, padded_model(0.1 * int(version)), FEATURES, OutputSpec(name="probabilities", column=1)
    )


FAULTS: dict[str, Callable[[LatencyProxy, str], None]] = {
    "downloads at 1 KB/s": lambda proxy, version: proxy.limit(down_bytes_per_s=1024),
    "model.onnx GETs answer 500": lambda proxy, version: proxy.fail_next(10**6, path_contains=f"/m/{version}/model"),
    "model.onnx bodies cut at 1 KB": lambda proxy, version: proxy.truncate_next(
        10**6, after_bytes=1000, path_contains=f"/m/{version}/model"
    ),
}


async def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def test_a_slow_or_broken_store_never_serves_a_partial_model(
    s3_server: S3Server, aws_env: None, tmp_path: Path
) -> None:
    s3_server.start()
    bucket = f"slow-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server.endpoint_url, bucket)
    catalog = Catalog(S3Store(bucket, "prod", s3_server.endpoint_url, "us-east-1"))  # publishes around the proxy
    publish(catalog, "1")
    catalog.promote("p", "m@1")
    rows: list[str] = []
    with LatencyProxy(s3_server.port) as proxy:
        env = {
            "SIBYL_MODEL_STORE__URL": f"s3://{bucket}/prod",
            "SIBYL_MODEL_STORE__S3_ENDPOINT_URL": f"http://{proxy.address}",
            "SIBYL_MODEL_STORE__POLL_INTERVAL_S": "0.5",
            "SIBYL_MODEL_STORE__S3_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
            "SIBYL_METRICS__PORT": "0",
        }
        proc, port, metrics_port = serve_subprocess(tmp_path, log_to=tmp_path / "server.log", **env)

        def failed_loads() -> float:
            return value(scrape(metrics_port), "sibyl_model_loads_total", model="m", outcome="failed")

        try:
            answering(port, 1)
            async with OpenLoad(f"127.0.0.1:{port}", request, rate=100, deadline_s=2.0) as load:
                load.mark("start")
                await asyncio.sleep(2.0)
                for n, (name, fault) in enumerate(FAULTS.items(), start=2):
                    version, old = str(n), str(n - 1)
                    await asyncio.to_thread(publish, catalog, version)
                    load.mark(f"fault {name}")
                    fault(proxy, version)
                    before = failed_loads()
                    await asyncio.to_thread(catalog.promote, "p", f"m@{version}")
                    # Tried, failed, and tried again at a later poll: two failures counted, the old one serving.
                    await wait_until(lambda b=before: failed_loads() >= b + 2, 60, f"{name}: two failed loads")
                    load.mark(f"repair {name}")
                    proxy.reset()
                    recovery = await wait_until(
                        lambda v=version: any(
                            s.response.results[0].version == v for s in load.shots[-20:] if s.response
                        ),
                        30,
                        f"{name}: m@{version} serving after the repair",
                    )
                    during = load.between(f"fault {name}", f"repair {name}")
                    versions = {s.response.results[0].version for s in during if s.response}
                    rows.append(
                        f"[s3 store: {name}] calls during {len(during)}, failed {sum(s.code != 'OK' for s in during)}, "
                        f"versions answering {sorted(versions)}, p99 during {p99_ms(during):.1f} ms, failed loads "
                        f"{failed_loads() - before:.0f}, new version serving {recovery:.1f} s after the repair"
                    )
                    assert versions == {old}, f"{name}: during the fault {versions} answered, not only m@{old}"
                await asyncio.sleep(1.0)
                load.mark("end")
        finally:
            code = await asyncio.to_thread(stop, proc)
    print("\n" + "\n".join(rows))
    assert code == 0, log_tail(tmp_path)
    assert load.failed() == [], f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert proxy.counts.injected_status >= 2 and proxy.counts.truncated >= 2, proxy.counts
    served = [s.response.results[0].version for s in sorted(load.shots, key=lambda s: s.t) if s.response]
    assert served == sorted(served, key=int), "a version answered after a newer one had"
    assert served[-1] == str(len(FAULTS) + 1)
    logged = logged_ids_from_file([tmp_path / "predictions.jsonl"])
    assert load.answered() <= logged, f"{len(load.answered() - logged)} answered predictions missing from the log"
