"""A real Prometheus scrapes a real `sibyl serve` under a short load with faults injected (Kafka absent with a
tiny spool, Redis stopped, a corrupt model version promoted, a low in-flight limit). Every dashboard query and
the signal behind every alert must return data through Prometheus' HTTP API, every rule must evaluate without
error, and the alerts the faults cause must fire."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from google.protobuf import json_format

from sibyl.config import EXAMPLE_STORE
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore
from sibyl.monitor.records import Logged, OutcomeRow
from sibyl.monitor.state import PartitionState
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.needs import launch, missing
from tests.support.process import accepts_tcp, free_port
from tests.support.servers import MissingBinaryError, PrometheusServer, RedisServer

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "sibyl.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "sibyl.json"
REQUEST = EXAMPLE_STORE.parent / "request.json"
LOAD_S = 12.0  # long enough for a few scrapes after Prometheus' first one (~6 s after start)
# Wide windows so quantiles over the whole run are numbers, not NaN from a quiet last few seconds.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1m"}

# The measured quantity behind each alert (its expression minus the threshold); it must appear in the alert's
# expression verbatim. Under this test's faults each returns data; the thresholds are proven by the promtool
# unit tests in deploy/prometheus/tests/sibyl_test.yml.
ALERT_SIGNALS = {
    "SibylDown": 'up{job="sibyl"}',
    "SibylTargetMissing": 'up{job="sibyl"}',
    "SibylNoTraffic": "sum by (predictor) (rate(sibyl_requests_total[5m]))",
    "SibylHighErrorRate": "predictor:sibyl_request_errors:ratio_rate5m",
    "SibylLatencyP99OverSLO": "predictor:sibyl_request_latency_seconds:p99_5m",
    "SibylFeatureDefaultRateHigh": "sibyl:feature_default:ratio_rate5m",
    "SibylFeatureCircuitOpen": "max by (instance) (sibyl_feature_circuit_open)",
    "SibylModelLoadFailed": 'sum by (model) (increase(sibyl_model_loads_total{outcome="failed"}[15m]))',
    "SibylModelStoreErrors": "sum by (instance) (rate(sibyl_model_store_errors_total[5m]))",
    "SibylPredlogSpoolGrowing": "sum by (instance) (deriv(sibyl_predlog_spool_bytes[10m]))",
    "SibylPredlogRecordsDropped": 'sum by (instance) (increase(sibyl_predlog_records_total{outcome="dropped"}[5m]))',
    "SibylPredlogSenderRestarting": "sum by (instance) (increase(sibyl_predlog_sender_restarts_total[15m]))",
    "SibylThreadSaturated": 'max by (instance, thread) (rate(sibyl_thread_cpu_seconds_total{thread!="other"}[5m]))',
    "SibylDriftPSIHigh": "max by (model, version, feature) (sibyl_drift_psi)",
    "SibylShadowDisagreement": 'predictor_model_role_slice:sibyl_shadow_agreement:ratio_rate30m{slice="all"}',
    "SibylPositiveRateShift": 'predictor_model_slice:sibyl_positive_rate:ratio_1h{slice="all"}',
    "SibylModelQualityDrop": 'max by (predictor, model, version, slice) (sibyl_quality_auc{role="primary", window="24h"})',
}
# Alerts without a `for:` that this test's faults must set firing.
MUST_FIRE = {"SibylModelLoadFailed": {"model": "gbdt"}, "SibylPredlogRecordsDropped": {}}

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
pytestmark = pytest.mark.timeout(120)


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    for var in ("${predictor}", "$predictor", "${model}", "$model", "${slice}", "$slice"):
        expr = expr.replace(var, ".*")
    return expr


def dashboard_queries() -> dict[str, str]:
    """'panel title / refId' -> PromQL; plus one query per label_values() template variable."""
    board = json.loads(DASHBOARD.read_text())
    out: dict[str, str] = {}
    stack = list(board["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        for t in panel.get("targets", []):
            out[f"{panel['title']} / {t['refId']}"] = substitute(t["expr"])
    for var in board["templating"]["list"]:
        if var["type"] == "query":  # label_values(metric, label) -> the label's values must exist
            metric, label = var["definition"].removeprefix("label_values(").rstrip(")").split(", ")
            out[f"variable {var['name']}"] = f"count by ({label}) ({metric}{{{label}!=''}})"
    return out


def alert_rules() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}


def api(prom: PrometheusServer, path: str) -> Any:
    with _OPENER.open(f"{prom.url}{path}", timeout=10) as response:
        return json.load(response)["data"]


# ---- the system under test


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from launch(RedisServer)


@contextmanager
def sibyl_serve(tmp_path: Path, redis_url: str) -> Iterator[tuple[int, int]]:
    """`python -m sibyl serve` on free ports; yields (grpc_port, metrics_port)."""
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "SIBYL_SERVER__PORT": str(grpc_port),
        "SIBYL_SERVER__MAX_IN_FLIGHT": "1",  # so bursts are partly rejected (rejected, RESOURCE_EXHAUSTED)
        "SIBYL_SERVER__OFFLOAD_ROWS": "100",  # 300-row batches leave the loop: other calls overlap them
        "SIBYL_METRICS__PORT": str(metrics_port),
        "SIBYL_HTTP__PORT": "0",
        "SIBYL_METRICS__DRIFT_SAMPLE": "1.0",
        "SIBYL_MODEL_STORE__URL": f"file://{tmp_path / 'store'}",
        "SIBYL_MODEL_STORE__POLL_INTERVAL_S": "0.3",
        "SIBYL_FEATURES__BACKEND": "redis",
        "SIBYL_FEATURES__URL": redis_url,
        "SIBYL_FEATURES__CACHE_TTL_S": "0.5",  # short: hits happen, yet Redis is still asked after it stops
        "SIBYL_PREDLOG__SINK": "kafka",
        "SIBYL_PREDLOG__KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens: records spool
        "SIBYL_PREDLOG__SPOOL_DIR": str(tmp_path / "spool"),
        "SIBYL_PREDLOG__SPOOL_MAX_BYTES": "4096",  # fills within a few calls: records drop
    }
    log = (tmp_path / "sibyl.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "sibyl", "serve"], env=env, stdout=log, stderr=log, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not (accepts_tcp(grpc_port) and accepts_tcp(metrics_port)):
            assert proc.poll() is None, f"sibyl serve exited: {(tmp_path / 'sibyl.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "sibyl serve did not open its ports in 30 s"
            time.sleep(0.1)
        yield grpc_port, metrics_port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def prometheus_config(metrics_port: int, monitor_port: int) -> str:
    return yaml.safe_dump(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "sibyl", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]},
                {"job_name": "sibyl-monitor", "static_configs": [{"targets": [f"127.0.0.1:{monitor_port}"]}]},
            ],
        }
    )


@contextmanager
def sibyl_monitor(tmp_path: Path) -> Iterator[int]:
    """`python -m sibyl monitor` over a join state holding labelled rows of the example predictor (its primary and
    shadow, a few slices), as if outcomes had been reported; yields its metrics port."""
    state = PartitionState(tmp_path / "monitor" / "partition-0.db", window_s=86_400.0, max_bytes=1 << 30)
    rng = np.random.default_rng(1)
    now = time.time_ns()
    for call in range(20):
        pid = f"{call:032x}"
        labels = [["all", f"weekend={i % 2}"] for i in range(50)]
        y = (rng.random(50) < 0.3).astype(float)
        scores = np.clip(y * 0.3 + rng.random(50) * 0.7, 0, 1)
        state.add_predictions(
            [(Logged(pid, "example", "gbdt", "1", "primary", now, 50, scores.astype(np.float32)), labels)]
        )
        state.add_predictions(
            [(Logged(pid, "example", "mlp", "1", "shadow", now, 50, rng.random(50).astype(np.float32)), None)]
        )
        state.add_outcomes([OutcomeRow(pid, i, float(y[i]), now, 1.0) for i in range(50)], now_ns=now)
    eta = Logged("f" * 32, "eta", "minutes", "1", "primary", now, 50, rng.uniform(10, 40, 50).astype(np.float32))
    state.add_predictions([(eta, [["all"]] * 50)])  # a regression predictor: numeric outcomes (MAE, RMSE)
    state.add_outcomes([OutcomeRow("f" * 32, i, float(rng.uniform(10, 40)), now, 1.0) for i in range(50)], now_ns=now)
    state.set_offset("predictions", 0, "")
    state.commit()
    state.close()
    port = free_port()
    env = {**os.environ, "SIBYL_MONITOR__STATE_DIR": str(tmp_path / "monitor"), "SIBYL_MONITOR__METRICS_PORT": str(port),
           "SIBYL_PREDLOG__PATH": str(tmp_path / "none.jsonl"), "SIBYL_MODEL_STORE__URL": f"file://{tmp_path / 'store'}"}  # fmt: skip
    log = (tmp_path / "monitor.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "sibyl", "monitor"], env=env, stdout=log, stderr=log, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not accepts_tcp(port):
            assert proc.poll() is None, f"sibyl monitor exited: {(tmp_path / 'monitor.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "sibyl monitor did not open its port in 30 s"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def publish_broken_version(store: Path) -> None:
    """gbdt@2: a valid manifest whose model bytes do not match its sha256; promoted, so sibyl tries to load it."""
    shutil.copytree(store / "models/gbdt/1", store / "models/gbdt/2")
    manifest = json.loads((store / "models/gbdt/2/manifest.json").read_text())
    manifest["version"] = "2"
    (store / "models/gbdt/2/manifest.json").write_text(json.dumps(manifest))
    with (store / "models/gbdt/2/model.onnx").open("ab") as f:
        f.write(b"corrupt")
    Catalog(FileStore(store)).promote("example", "gbdt@2")


def dense_batch(rng: np.random.Generator, rows: int = 300) -> PredictRequest:
    names = ["distance_km", "hour_of_day", "is_weekend", "promo_pct"]
    values = np.column_stack(
        [rng.uniform(0, 10, rows), rng.integers(0, 24, rows), rng.integers(0, 2, rows), rng.choice([0, 10], rows)]
    ).astype("<f4")
    return PredictRequest(
        predictor="example",
        context={"consumer_id": "7"},
        dense=DenseRows(feature_names=names, values=values.tobytes(), num_rows=rows),
        # stores 1-100 exist in the example features; 101-120 do not, so some values default
        row_entities=[EntityColumn(entity="store_id", ids=[str(i % 120 + 1) for i in range(rows)])],
    )


async def drive(grpc_port: int, tmp_path: Path, redis: RedisServer) -> dict[str, int]:
    """Bounded load for LOAD_S seconds; faults at fixed points. Returns call counts by status code."""
    request = json_format.Parse(REQUEST.read_text(), PredictRequest())
    unknown = PredictRequest(predictor="no-such-predictor", rows=request.rows)
    rng = np.random.default_rng(0)
    codes: dict[str, int] = {}

    async def call(stub: PredictionServiceStub, req: PredictRequest) -> None:
        try:
            await stub.Predict(req, timeout=5)
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        codes[code] = codes.get(code, 0) + 1

    start = time.monotonic()
    broke_model = stopped_redis = False
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = PredictionServiceStub(channel)
        for _ in range(2000):  # bounded by count and by time
            elapsed = time.monotonic() - start
            if elapsed > LOAD_S:
                break
            if not broke_model and elapsed > 4:
                publish_broken_version(tmp_path / "store")
                broke_model = True
            if not stopped_redis and elapsed > 7:
                redis.stop()  # fetches fail, the breaker opens
                stopped_redis = True
            # A 300-row batch among small calls: drift gets rows, and the burst exceeds the in-flight limit.
            await asyncio.gather(
                *(call(stub, dense_batch(rng)) for _ in range(2)), *(call(stub, request) for _ in range(6))
            )
            await call(stub, unknown)
            await asyncio.sleep(0.02)
    redis.start()  # the fixture's server ends as it began
    return codes


def test_every_dashboard_query_and_alert_signal_returns_data_from_a_live_sibyl(
    tmp_path: Path, redis: RedisServer
) -> None:
    rules = alert_rules()
    assert set(ALERT_SIGNALS) == set(rules), "give every alert a signal in ALERT_SIGNALS"
    for name, signal in ALERT_SIGNALS.items():
        assert signal in rules[name], f"{name}: signal {signal!r} is not part of its expression"

    shutil.copytree(EXAMPLE_STORE, tmp_path / "store")
    load = subprocess.run(
        [sys.executable, "-m", "sibyl", "features", "load"],
        env={**os.environ, "SIBYL_FEATURES__BACKEND": "redis", "SIBYL_FEATURES__URL": redis.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert load.returncode == 0, load.stderr

    with sibyl_serve(tmp_path, redis.url) as (grpc_port, metrics_port), sibyl_monitor(tmp_path) as monitor_port:
        try:
            prom = PrometheusServer(prometheus_config(metrics_port, monitor_port))
        except MissingBinaryError as exc:
            missing(exc)
        with prom:
            codes = asyncio.run(drive(grpc_port, tmp_path, redis))
            assert codes.get("OK", 0) > 50 and codes.get("RESOURCE_EXHAUSTED", 0) > 0, codes

            queries = {f"dashboard: {k}": v for k, v in dashboard_queries().items()}
            queries |= {f"alert signal {k}": v for k, v in ALERT_SIGNALS.items()}
            pending = dict(queries)
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                for label, expr in list(pending.items()):
                    result = prom.query(expr)["result"]
                    values = [float(s["value"][1]) for s in result] if result and "value" in result[0] else []
                    if any(not math.isnan(v) for v in values):
                        del pending[label]
                if pending:
                    time.sleep(1)
            log = (tmp_path / "sibyl.log").read_text()[-3000:]
            assert not pending, f"queries without data: {json.dumps(pending, indent=1)}\ncalls: {codes}\n{log}"

            for expr in rules.values():
                prom.query(expr)  # the whole alert expression runs (raises on a rejected query)
            groups = api(prom, "/api/v1/rules")["groups"]
            evaluated = [r for g in groups for r in g["rules"]]
            assert len(evaluated) == sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
            broken = {r["name"]: r.get("lastError") for r in evaluated if r["health"] != "ok"}
            assert not broken, f"rules failing to evaluate: {broken}"

            deadline = time.monotonic() + 15
            firing: dict[str, list[dict[str, str]]] = {}
            while time.monotonic() < deadline:
                firing = {}
                for a in api(prom, "/api/v1/alerts")["alerts"]:
                    if a["state"] == "firing":
                        firing.setdefault(a["labels"]["alertname"], []).append(a["labels"])
                if all(
                    any(labels.items() <= got.items() for got in firing.get(name, []))
                    for name, labels in MUST_FIRE.items()
                ):
                    break
                time.sleep(1)
            for name, labels in MUST_FIRE.items():
                assert any(labels.items() <= got.items() for got in firing.get(name, [])), (name, firing)
