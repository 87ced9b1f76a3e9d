"""`sibyl serve --workers 2`: the parent's merged /metrics shows the versions loaded now, not every version ever
loaded. Promote m@1 -> m@2 -> m@3 (m@2 with drift baselines): m@1's and then m@2's sibyl_model_loaded,
sibyl_predictor_model and sibyl_drift_psi series leave the merged view."""

from __future__ import annotations

import hashlib
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sibyl.models.baseline import compute_baselines
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import Manifest, OutputSpec
from sibyl.models.runtime import OnnxModel
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import serve_subprocess
from tests.support.onnxgen import FEATURES, logistic_onnx
from tests.support.workers import answering

pytestmark = pytest.mark.timeout(180)
Series = set[tuple[str, tuple[tuple[str, str], ...]]]


def series(metrics_port: int) -> Series:
    """(name, labels) of every sample of the three gauges that come and go, as the parent serves them."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    out: Series = set()
    for family in text_string_to_metric_families(text):
        if family.name in ("sibyl_model_loaded", "sibyl_predictor_model", "sibyl_drift_psi"):
            for sample in family.samples:
                assert sample.value == sample.value, f"a NaN (removed) series leaked: {sample}"
                out.add((sample.name, tuple(sorted(sample.labels.items()))))
    return out


def versions(found: Series, name: str) -> set[str]:
    return {dict(labels)["version"] for n, labels in found if n == name and dict(labels).get("model") == "m"}


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def publish_with_baselines(catalog: Catalog, version: str) -> None:
    model = logistic_onnx([0.2, 0.01, 0.1, 0.3, -0.3])
    output = OutputSpec(name="probabilities", column=1)
    sample = np.random.default_rng(1).normal(size=(500, 5)).astype(np.float32)
    sha = hashlib.sha256(model).hexdigest()
    probe = Manifest(name="m", version=version, input_name="input", inputs=FEATURES, output=output, sha256=sha)
    scores = OnnxModel(probe, model).run(sample)[:, 0]
    catalog.publish("m", version, model, FEATURES, output, baselines=compute_baselines(FEATURES, sample, scores))


def score_many(port: int, rows: int = 600, calls: int = 4) -> None:
    """Enough rows on one connection for a worker's drift monitor to export (min 200, every 1,000 rows)."""
    request = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": float(i % 5)}) for i in range(rows)])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for _ in range(calls):
            PredictionServiceStub(channel).Predict(request, timeout=30, wait_for_ready=True)


def test_unloaded_versions_leave_the_merged_metrics(tmp_path: Path) -> None:
    env = {"SIBYL_MODEL_STORE__POLL_INTERVAL_S": "0.2", "SIBYL_METRICS__DRIFT_SAMPLE": "1"}
    proc, port, metrics_port = serve_subprocess(tmp_path, "--workers", "2", "--metrics-port", "0", **env)
    catalog = Catalog(FileStore(tmp_path / "store"))  # publish_models: p -> m@1, shadow s@1
    try:
        answering(port, 2)
        assert versions(series(metrics_port), "sibyl_model_loaded") == {"1"}
        publish_with_baselines(catalog, "2")
        catalog.promote("p", "m@2")
        wait_for(lambda: versions(series(metrics_port), "sibyl_model_loaded") == {"2"}, "m@1 to leave /metrics")
        assert versions(series(metrics_port), "sibyl_predictor_model") == {"2"}
        score_many(port)
        wait_for(lambda: versions(series(metrics_port), "sibyl_drift_psi") == {"2"}, "m@2's drift PSI exported")
        publish_with_baselines(catalog, "3")
        catalog.promote("p", "m@3")
        wait_for(lambda: versions(series(metrics_port), "sibyl_model_loaded") == {"3"}, "m@2 to leave /metrics")
        found = series(metrics_port)
        assert versions(found, "sibyl_drift_psi") == set(), "m@2's PSI outlived its version"
        assert versions(found, "sibyl_predictor_model") == {"3"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
