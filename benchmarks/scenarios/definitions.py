"""Request shapes and answer checks: the sibyl scenarios (a name, a request, the server group it needs, how its
fixed-rate run is chosen), and the checks every entry's first answers must pass before it is measured."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from benchmarks.load import workload as w
from sibyl.kserve.grpc_predict_v2_pb2 import ModelInferResponse
from sibyl.v1 import predict_pb2

PREDICT = "/sibyl.v1.PredictionService/Predict"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
PREDICTOR = "bench"  # the benchmark store's predictor serving gbdt@1 (a V2 model is a sibyl predictor)
REDIS_FILL_RPS = 100.0  # issue 16: redis-fill p99 <= 6 ms at 100 rps


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    server: str  # "plain" (features in the request), "kafka" (the same, the log to Kafka), "redis" or "redis-kafka"
    payload: Callable[[], bytes]
    rows: int
    models: int  # results expected in the response
    fetches: bool = False  # entity features must come from the store (none defaulted)
    fixed: str | None = None  # the fixed-rate run: "redis-fill" (REDIS_FILL_RPS), "same-as-redis-fill", None
    env: Mapping[str, str] = field(default_factory=dict)  # settings of its server beyond the group's (a variant)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "mlp-256",
        "MLP (predictor bench-mlp: mlp@1), 256 rows dense input (packed float32), native Predict",
        "plain",
        lambda: w.request_dense("bench-mlp", w.SECOND, 256),
        rows=256,
        models=1,
    ),
    Scenario(
        "redis-fill",
        "100 rows, request features only; consumer + 100 store entities fetched from a real redis-server "
        f"(cache off); native Predict; file log on; fixed run at {REDIS_FILL_RPS:g} rps",
        "redis",
        lambda: w.request_fetch("bench", w.PRIMARY, 100),
        rows=100,
        models=1,
        fetches=True,
        fixed="redis-fill",
    ),
    Scenario(
        "shadow-log",
        "redis-fill + an MLP shadow (sample 1.0) + every prediction logged to a real Kafka-protocol broker "
        "(tansu); fixed run at redis-fill's rate",
        "redis-kafka",
        lambda: w.request_fetch("bench-shadow", w.PRIMARY, 100),
        rows=100,
        models=1,
        fetches=True,
        fixed="same-as-redis-fill",
    ),
)
SCENARIOS += (
    replace(
        SCENARIOS[-1],
        name="shadow-log-confluent",
        description="shadow-log with the log through confluent-kafka (librdkafka; SIBYL_PREDLOG__KAFKA_CLIENT="
        "confluent) instead of kafka-python; fixed run at redis-fill's rate",
        env={"SIBYL_PREDLOG__KAFKA_CLIENT": "confluent"},
    ),
)
SCENARIOS += (
    Scenario(
        "shadow-kafka-1",
        "1 row, features in the request, an MLP shadow (sample 1.0) and every prediction logged to a real "
        "Kafka-protocol broker (tansu); native Predict (issue 33: its c=1 p99 against sibyl-native-nolog's)",
        "kafka",
        lambda: w.request_features("bench-shadow", w.PRIMARY, 1),
        rows=1,
        models=1,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


def check_native(raw: bytes, rows: int, models: int, fetches: bool = False) -> str | None:
    """None when a PredictResponse looks right, else what is wrong (the run would measure the wrong thing)."""
    resp = predict_pb2.PredictResponse.FromString(raw)
    if resp.num_rows != rows:
        return f"answered {resp.num_rows} rows, expected {rows}"
    if len(resp.results) != models:
        return f"answered {len(resp.results)} model results, expected {models}"
    if fetches and resp.defaulted:
        names = sorted(d.feature for d in resp.defaulted)
        return f"features defaulted instead of fetched: {names} (is the feature store loaded?)"
    return None


def check_v2(raw: bytes, rows: int) -> str | None:
    """None when a ModelInferResponse carries one finite score per row in its first output."""
    resp = ModelInferResponse.FromString(raw)
    if not resp.outputs:
        return "answered no output"
    shape = [int(d) for d in resp.outputs[0].shape]
    if not shape or shape[0] != rows:
        return f"first output has shape {shape}, expected {rows} rows"
    if resp.raw_output_contents:
        values = np.frombuffer(resp.raw_output_contents[0], dtype="<f4")
    else:
        values = np.asarray(resp.outputs[0].contents.fp32_contents, dtype=np.float32)
    if values.size < rows or not np.all(np.isfinite(values)):
        return f"{values.size} values for {rows} rows, or non-finite scores"
    return None


def check_response(scenario: Scenario, raw: bytes) -> str | None:
    return check_native(raw, scenario.rows, scenario.models, scenario.fetches)
