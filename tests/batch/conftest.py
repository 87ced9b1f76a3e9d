"""Batch-scoring fixtures: one case built from the bundled example (the same rows as an Arrow table for the batch
scorer and as dense Predict requests for a real server), the example features in a real Redis, and the server's
answers through gRPC Predict on a real in-process server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np
import pytest

from sibyl.cli.main import main
from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server
from tests.support.needs import in_ci
from tests.support.redis_servers import RedisServer

STORE_URL = f"file://{EXAMPLE_STORE}"
PREFIX = "batch:v1"
SAMPLE = Path(EXAMPLE_FEATURES).parent / "sample.csv"
DROPPED = ["consumer_orders_30d", "consumer_avg_basket_usd", "promo_pct"]  # from the store, or the default
REQUEST_ROWS = 5_000  # rows per Predict (the server's max_rows is 10,000)


def requires(module: str, hint: str) -> ModuleType:
    """The module, or a skip (a failure in CI, CI=true) saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed: {hint}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def requires_java() -> None:
    if shutil.which("java") is None:
        message = "java not found: apt-get install openjdk-17-jre-headless (bash scripts/test.sh does)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@contextlib.contextmanager
def worker_env() -> Iterator[None]:
    """Engine workers (Spark's Python workers, Ray's actors) import this checkout, not whatever copy of sibyl the
    environment's editable install points at, and run this interpreter."""
    root = str(Path(__file__).resolve().parents[2])
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYSPARK_PYTHON")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, saved["PYTHONPATH"]) if p)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Case:
    """The same rows twice: `columns` (numpy, for the table) and names/values/entities (a dense request)."""

    columns: dict[str, Any]  # name -> float64 array, int64 ids, list of id strings (None = null) or vectors
    names: list[str]
    values: np.ndarray  # float32 [rows, len(names)]; NaN = not given
    entities: dict[str, list[str]]  # per-row ids, "" = none

    @property
    def rows(self) -> int:
        return len(self.values)

    def table(self) -> Any:
        import pyarrow as pa

        out = {}
        for name, column in self.columns.items():
            if name == "consumer_emb":
                out[name] = pa.array(
                    [None if np.isnan(v).all() else v.tolist() for v in column], pa.list_(pa.float64())
                )
            elif name == "store_id":
                out[name] = pa.array(column, pa.string())
            else:
                out[name] = pa.array(column, from_pandas=True)  # NaN -> null for floats
        return pa.table(out)


def make_case(rows: int, seed: int = 5) -> Case:
    """sample.csv's rows repeated: consumer features partly from Redis (ids 1-250; 201-250 unknown there),
    consumer_emb as a list column (null in every 4th row), store_rating null in every 5th row, distance_km NaN in
    every 7th (no entity: its default), store ids 1-120 (101-120 unknown) and no store id in every 9th row."""
    rng = np.random.default_rng(seed)
    header = SAMPLE.read_text().splitlines()[0].split(",")
    sample = np.loadtxt(SAMPLE, delimiter=",", skiprows=1)
    data = sample[rng.integers(0, len(sample), rows)] + rng.normal(0, 0.01, (rows, len(header)))
    index = np.arange(rows)
    columns: dict[str, Any] = {}
    emb = data[:, [header.index(f"consumer_emb[{i}]") for i in range(4)]]
    emb[index % 4 == 0] = np.nan
    for j, name in enumerate(header):
        if name in DROPPED or name.startswith("consumer_emb"):
            continue
        column = data[:, j].copy()
        if name == "store_rating":
            column[index % 5 == 0] = np.nan
        if name == "distance_km":
            column[index % 7 == 0] = np.nan
        columns[name] = column
    columns["consumer_emb"] = emb
    consumers = rng.integers(1, 251, rows)
    stores = [None if i % 9 == 0 else str(s) for i, s in enumerate(rng.integers(1, 121, rows))]
    columns["consumer_id"], columns["store_id"] = consumers, stores
    names = [n for n in columns if n not in ("consumer_emb", "consumer_id", "store_id")]
    values = np.column_stack([columns[n] for n in names] + [emb]).astype(np.float32)
    names += [f"consumer_emb[{i}]" for i in range(4)]
    entities = {"consumer_id": [str(c) for c in consumers], "store_id": [s or "" for s in stores]}
    return Case(columns, names, values, entities)


def load_example_features(redis: RedisServer, prefix: str = PREFIX) -> dict[str, Any]:
    """The bundled features.jsonl into Redis with `sibyl features load`; the feature settings that read them."""
    code = main(["features", "load", str(EXAMPLE_FEATURES), "--url", redis.url, "--prefix", prefix])
    assert code == 0
    return {"backend": "redis", "url": redis.url, "prefix": prefix}


async def _answers(tmp_path: Path, case: Case, features: dict[str, Any], extra: list[str]) -> list[Any]:
    # No cache, a long budget: on a loaded machine a slow fetch must not turn into defaults and a false mismatch.
    settings = {**features, "cache_ttl_s": 0, "budget_ms": 30_000}
    # One onnxruntime thread, as the scorer's default: the tree ensemble sums trees in another order with two
    # threads, which moves a GBDT score by up to ~2e-7 (float32 rounding); same threads, same bits.
    async with running_server(tmp_path, STORE_URL, features=settings, server={"inference_threads": 1}) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            answers = []
            for start in range(0, case.rows, REQUEST_ROWS):
                rows = slice(start, start + REQUEST_ROWS)
                values = np.ascontiguousarray(case.values[rows], "<f4")
                request = PredictRequest(
                    predictor="example",
                    dense=DenseRows(feature_names=case.names, values=values.tobytes(), num_rows=len(values)),
                    row_entities=[EntityColumn(entity=e, ids=ids[rows]) for e, ids in case.entities.items()],
                    extra_models=extra,
                )
                answers.append(await stub.Predict(request, timeout=60))
            return answers


def server_scores(
    tmp_path: Path,
    case: Case,
    features: dict[str, Any],
    extra: list[str] = (),  # type: ignore[assignment]
) -> tuple[dict[str, np.ndarray], list[set[str]]]:
    """The real server's answer for every row: float32 scores per model@version, and each row's defaulted set."""
    answers = asyncio.run(_answers(tmp_path, case, features, list(extra)))
    scores: dict[str, list[np.ndarray]] = {}
    defaulted: list[set[str]] = [set() for _ in range(case.rows)]
    for k, answer in enumerate(answers):
        for result in answer.results:
            scores.setdefault(f"{result.model}@{result.version}", []).append(np.asarray(result.scores, np.float32))
        for item in answer.defaulted:
            for row in item.rows:
                defaulted[k * REQUEST_ROWS + row].add(item.feature)
    return {ref: np.concatenate(parts) for ref, parts in scores.items()}, defaulted


@pytest.fixture
def redis_features(fresh_redis: RedisServer) -> dict[str, Any]:
    return load_example_features(fresh_redis)
