"""The whole outcome loop through real processes: `sibyl serve` answers and logs to its file log, outcomes are
reported over gRPC (OutcomeService.Report), `sibyl monitor` joins them, and its /metrics, `sibyl models compare`
and `sibyl models promote --gate` are checked against numbers computed here from the log and the labels sent
(scikit-learn). Three models of known quality: the primary `mid`, shadows `good` (the labels' own model) and `bad`
(unrelated to them)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from sibyl.client import Client
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec
from sibyl.models.store import FileStore
from sibyl.process.banner import parse_serving_line
from sibyl.v1.outcome_pb2 import Outcome, ReportOutcomesRequest
from sibyl.v1.outcome_pb2_grpc import OutcomeServiceStub
from tests.support.inproc import server_env
from tests.support.metric_samples import scraped
from tests.support.onnxgen import publish_logistic

INPUTS = [FeatureSpec(name="x1"), FeatureSpec(name="x2"), FeatureSpec(name="is_weekend")]
TRUE = ([2.0, -1.5, 0.8], -0.3)  # the labels come from this model
MODELS = {"mid": ([1.2, -0.4, 0.0], -0.2), "good": TRUE, "bad": ([-0.3, 0.2, 1.5], 0.1)}
ROWS, CALL = 1_200, 40


def build_store(root: Path) -> None:
    catalog = Catalog(FileStore(root))
    for name, (weights, bias) in MODELS.items():
        publish_logistic(catalog, name, "1", weights, bias, inputs=INPUTS)
    catalog.promote("loop", "mid@1")
    catalog.set_shadow("loop", "good@1", 1.0)
    catalog.set_shadow("loop", "bad@1", 1.0)
    path = root / "predictors" / "loop.json"
    config = json.loads(path.read_text())
    config["slices"] = [{"name": "weekend", "feature": "is_weekend"}]
    config["gate"] = {"metric": "auc", "min_rows": 300, "max_loss": 0.0}
    path.write_text(json.dumps(config))


def start(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[dict[str, Any]]:
    build_store(tmp_path / "store")
    env = server_env(tmp_path, SIBYL_METRICS__PORT="0", SIBYL_MONITOR__STATE_DIR=str(tmp_path / "monitor"),
                     SIBYL_MONITOR__METRICS_PORT="0", SIBYL_LOG_JSON="false")  # fmt: skip
    serve = start([sys.executable, "-m", "sibyl", "serve", "--port", "0"], env, tmp_path)
    assert serve.stdout is not None
    serving = parse_serving_line(serve.stdout.readline())
    monitor = start([sys.executable, "-m", "sibyl", "monitor"], env, tmp_path)
    assert monitor.stdout is not None
    line = monitor.stdout.readline()
    try:
        assert serving is not None, "sibyl serve did not start"
        assert "metrics on" in line, f"sibyl monitor did not start: {line!r}"
        yield {"port": serving.port, "monitor_port": int(line.rsplit(":", 1)[1]), "env": env, "tmp": tmp_path}
    finally:
        for proc in (serve, monitor):
            proc.terminate()
            proc.wait(30)


def sibyl(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sibyl", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_outcomes_joined_by_sibyl_monitor_give_scikit_learns_numbers(loop: dict[str, Any]) -> None:
    rng = np.random.default_rng(21)
    x = np.column_stack([rng.normal(0, 1, ROWS), rng.normal(0, 1, ROWS), rng.integers(0, 2, ROWS)]).astype(np.float32)
    truth = 1 / (1 + np.exp(-(x.astype(np.float64) @ np.asarray(TRUE[0]) + TRUE[1])))
    y = (rng.random(ROWS) < truth).astype(np.float64)
    ids: list[tuple[str, int]] = []
    with Client(f"127.0.0.1:{loop['port']}") as client:
        for start_row in range(0, ROWS, CALL):
            part = x[start_row : start_row + CALL]
            prediction = client.predict("loop", part, feature_names=["x1", "x2", "is_weekend"])
            ids += [(prediction.prediction_id, i) for i in range(part.shape[0])]
    outcomes = [Outcome(prediction_id=p, row=r, value=float(v)) for (p, r), v in zip(ids, y, strict=True)]
    extra = [outcomes[0], outcomes[1], Outcome(prediction_id="ab" * 16, row=0, value=1.0)]  # 2 duplicates, 1 unknown
    with grpc.insecure_channel(f"127.0.0.1:{loop['port']}") as channel:
        stub = OutcomeServiceStub(channel)
        for start_row in range(0, ROWS, 500):
            stub.Report(ReportOutcomesRequest(outcomes=outcomes[start_row : start_row + 500]), timeout=30)
        stub.Report(ReportOutcomesRequest(outcomes=extra), timeout=30)

    deadline = time.monotonic() + 90
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    joined = ("sibyl_monitor_outcomes_total", (("result", "joined"),))
    duplicate = ("sibyl_monitor_outcomes_total", (("result", "duplicate"),))
    while time.monotonic() < deadline:
        metrics = scraped(loop["monitor_port"])
        if metrics.get(joined) == ROWS and metrics.get(duplicate) == 2:
            break
        time.sleep(0.5)
    assert metrics.get(joined) == ROWS and metrics.get(duplicate) == 2, {k: v for k, v in metrics.items()
                                                                         if "outcomes" in k[0]}  # fmt: skip
    assert metrics[("sibyl_monitor_outcomes_total", (("result", "early"),))] == 1  # the unknown id waits

    # The same numbers from the raw log: each model's logged score of each row, joined here on prediction_id.
    log = [json.loads(line) for line in (loop["tmp"] / "predictions.jsonl").read_text().splitlines()]
    score = {(r["prediction_id"], r["model"]): np.asarray(r["scores"], np.float32) for r in log}
    weekend = x[:, 2] == 1
    for model in MODELS:
        s = np.concatenate([score[(pid, model)][row : row + 1] for pid, row in ids]).astype(np.float64)
        for slice_, rows in (("all", slice(None)), ("weekend=1", weekend), ("weekend=0", ~weekend)):
            role = "primary" if model == "mid" else "shadow"
            labels = {"predictor": "loop", "model": model, "version": "1", "role": role, "slice": slice_,
                      "window": "24h"}  # fmt: skip
            key = tuple(sorted(labels.items()))
            assert metrics[("sibyl_quality_auc", key)] == pytest.approx(roc_auc_score(y[rows], s[rows]), abs=1e-9)
            assert metrics[("sibyl_quality_log_loss", key)] == pytest.approx(log_loss(y[rows], s[rows]), abs=1e-9)
            assert metrics[("sibyl_quality_brier", key)] == pytest.approx(brier_score_loss(y[rows], s[rows]), abs=1e-9)

    env, cwd = loop["env"], loop["tmp"]
    shown = sibyl(env, cwd, "models", "compare", "loop", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    verdicts = {p["candidate"]["model"]: p["slices"][0]["verdict"] for p in result["pairs"]}
    assert verdicts == {"good": "better", "bad": "worse"}
    assert "good@1 (shadow) vs primary mid@1" in sibyl(env, cwd, "models", "compare", "loop").stdout

    refused = sibyl(env, cwd, "models", "promote", "loop", "bad@1", "--gate")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "gate: bad@1 auc" in refused.stderr and "slice all" in refused.stderr
    passed = sibyl(env, cwd, "models", "promote", "loop", "good@1", "--gate")
    assert passed.returncode == 0 and "gate passed" in passed.stdout, passed.stderr
    audit = sorted((cwd / "store" / "audit" / "loop").glob("*-promote.json"))[-1]
    assert json.loads(audit.read_text())["detail"]["gate"]["metric"] == "auc"
