"""The scenarios: a name, a request shape, the server it needs, and how to check one answer before measuring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.load import workload as w
from sibyl.v1 import predict_pb2

PREDICT = "/sibyl.v1.PredictionService/Predict"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    server: str  # "plain" (features in the request), "redis" or "redis-kafka"
    payload: Callable[[], bytes]
    rows: int
    models: int  # results expected in the response
    sweep_start_rps: float
    ref_rps: float  # fixed-run rate when nothing else decides it
    fetches: bool = False  # entity features must come from the store (none defaulted)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "single-row",
        "1 row, every feature in the request, GBDT (predictor bench: gbdt@1, no shadow)",
        "plain",
        lambda: w.request_features("bench", w.PRIMARY, 1),
        rows=1,
        models=1,
        sweep_start_rps=200,
        ref_rps=200,
    ),
    Scenario(
        "batch-100",
        "100 rows (map form), features in the request, 2 models: gbdt@1 + extra_models mlp@1",
        "plain",
        lambda: w.request_features("bench", w.PRIMARY, 100, (w.SECOND,)),
        rows=100,
        models=2,
        sweep_start_rps=50,
        ref_rps=50,
    ),
    Scenario(
        "mlp-256",
        "MLP, 256 rows dense input (packed float32)",
        "plain",
        lambda: w.request_dense("bench-mlp", w.SECOND, 256),
        rows=256,
        models=1,
        sweep_start_rps=50,
        ref_rps=50,
    ),
    Scenario(
        "redis-fill",
        "100 rows, request features only; consumer + 100 store entities fetched from a real redis-server; "
        "fixed run at half the max sustainable rate",
        "redis",
        lambda: w.request_fetch("bench", w.PRIMARY, 100),
        rows=100,
        models=1,
        sweep_start_rps=50,
        ref_rps=50,
        fetches=True,
    ),
    Scenario(
        "shadow-log",
        "redis-fill + an MLP shadow (sample 1.0) + every prediction logged to a real Kafka-protocol broker "
        "(tansu); fixed run at redis-fill's rate",
        "redis-kafka",
        lambda: w.request_fetch("bench-shadow", w.PRIMARY, 100),
        rows=100,
        models=1,
        sweep_start_rps=50,
        ref_rps=50,
        fetches=True,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


def check_response(scenario: Scenario, raw: bytes) -> str | None:
    """None when the answer looks right, else what is wrong (the run would measure the wrong thing)."""
    resp = predict_pb2.PredictResponse.FromString(raw)
    if resp.num_rows != scenario.rows:
        return f"answered {resp.num_rows} rows, expected {scenario.rows}"
    if len(resp.results) != scenario.models:
        return f"answered {len(resp.results)} model results, expected {scenario.models}"
    if scenario.fetches and resp.defaulted:
        names = sorted(d.feature for d in resp.defaulted)
        return f"features defaulted instead of fetched: {names} (is the feature store loaded?)"
    return None
