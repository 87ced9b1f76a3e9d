"""The real server's answers for a batch case: every row through gRPC Predict on an in-process server, scores per
model@version and the features each row defaulted, to compare the batch scorer's with bit for bit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.batch.example_case import STORE_URL, Case
from tests.support.inproc import running_server

REQUEST_ROWS = 5_000  # rows per Predict (the server's max_rows is 10,000)


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
