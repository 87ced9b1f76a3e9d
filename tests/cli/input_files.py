"""Files an operator hands the CLI, written for a test: a scoring input (`sibyl score`) whose expected feature
matrix is known, and a model spec and sample rows (`sibyl models publish`) for the test models' FEATURES."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tests.support.onnxgen import FEATURES

ROWS = 2_500  # rows in write_input's file


def write_input(path: Path) -> np.ndarray:
    """amount, rating given (rating empty in every 7th row: its default 4.0); age/emb from the store for c1."""
    rng = np.random.default_rng(3)
    amount, rating = rng.normal(size=ROWS), rng.uniform(1, 5, size=ROWS)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["order_id", "consumer_id", "amount", "rating"])
        for i in range(ROWS):
            out.writerow(
                [
                    f"o{i}",
                    "c1" if i % 2 else "stranger",
                    repr(float(amount[i])),
                    "" if i % 7 == 0 else repr(float(rating[i])),
                ]
            )
    rating = np.where(np.arange(ROWS) % 7 == 0, 4.0, rating)
    known = np.arange(ROWS) % 2 == 1
    age = np.where(known, 40.0, 30.0)
    emb0, emb1 = np.where(known, 0.5, 0.1), np.where(known, -0.5, 0.2)
    return np.column_stack([amount, age, rating, emb0, emb1]).astype(np.float32)


def write_spec(path: Path, output: dict | None = None, inputs: list | None = None) -> Path:
    spec = {
        "inputs": inputs or [f.model_dump(exclude_defaults=True) for f in FEATURES],
        "output": output or {"name": "probabilities", "column": 1},
        "metadata": {"owner": "tests"},
    }
    path.write_text(json.dumps(spec))
    return path


def write_sample(path: Path, rows: np.ndarray) -> Path:
    columns = [c for f in FEATURES for c in f.columns]
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        out.writerows(rows.tolist())
    return path
