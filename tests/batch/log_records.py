"""Prediction log records and outcome lines as the server's file log holds them, for the archive and quality tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sibyl.predlog.jsonl import to_json_bytes
from sibyl.serving.decode import RowBatch
from sibyl.serving.records import build_record
from sibyl.v1.predict_pb2 import Role
from sibyl.v1.predlog_pb2 import PredictionLog

DAY_NS = 86_400 * 10**9
T0 = 1_796_000_000 * 10**9  # 2026-11-30T00:53:20Z


def record(i: int, model: str = "gbdt", role: int = Role.ROLE_PRIMARY, rows: int = 3, dim: int = 1,
           at: int = T0, predictor: str = "eta", scores: np.ndarray | None = None,
           features: tuple[str, str] = ("x1", "x2")) -> PredictionLog:  # fmt: skip
    """Call i's record of `model`: features x1 = 2r + i, x2 = 2r + 1 + i per row r (or other names), the second
    defaulted on row 0, a shared consumer_id and a store_id per row; scores evenly spaced in [0.1, 0.9] unless
    given."""
    values = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2) + i
    batch = RowBatch(
        rows, list(features), values, {"consumer_id": f"c{i}"}, {"store_id": [f"s{r}" for r in range(rows)]}
    )
    if scores is None:
        scores = np.linspace(0.1, 0.9, rows * dim, dtype=np.float32)
    return build_record(
        prediction_id=f"{i:032x}", request_id=f"r{i}", predictor=predictor, model=model, version="1", role=role,
        arm="", sent_at_ns=at, batch=batch, columns=list(features), matrix=values, defaulted={features[1]: np.array([0])},
        scores=np.asarray(scores, np.float32).reshape(rows, dim), latency_ms=1.0, host="h",
    )  # fmt: skip


def write_log(path: Path, records: list[PredictionLog]) -> None:
    with path.open("ab") as f:
        for r in records:
            f.write(to_json_bytes(r, newline=True))


def write_outcomes(path: Path, outcomes: list[tuple[int, int, float, int]]) -> None:
    """(call i, row, value, observed_at ns) as outcome_sink writes them."""
    with path.open("a") as f:
        for i, row, value, at in outcomes:
            line = {"prediction_id": f"{i:032x}", "row": row, "value": value, "observed_at_unix_nanos": str(at)}
            f.write(json.dumps(line) + "\n")
