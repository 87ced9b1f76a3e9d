"""One batch-scoring case built from the bundled example: the same rows as an Arrow table for the batch scorer and
as dense Predict requests for a real server, and the example features loaded into a real Redis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sibyl.cli.main import main
from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE
from tests.support.redis_servers import RedisServer

STORE_URL = f"file://{EXAMPLE_STORE}"
PREFIX = "batch:v1"
SAMPLE = Path(EXAMPLE_FEATURES).parent / "sample.csv"
DROPPED = ["consumer_orders_30d", "consumer_avg_basket_usd", "promo_pct"]  # from the store, or the default


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
