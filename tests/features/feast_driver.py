"""Runs inside Feast's own venv (feast_env.py), never imported by sibyl: builds a Feast repo, applies and
materializes it into a Redis, then writes what `FeatureStore.get_online_features` returns for each read to OUT, as JSON.
One process does it all: importing feast takes seconds.

    python feast_driver.py REPO '{"connection": "127.0.0.1:6379", "project": "p", "version": 3, "cluster": false,
                                  "reads": [{"features": ["driver_stats:trips"], "rows": [{"driver_id": 1001}]}]}' OUT

The output holds the rows written ("drivers", "customers", with their event times "ts") and "reads".
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FEATURE_REPO = """
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(0),  # never expires
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float64),
        Field(name="trips", dtype=Int64),
        Field(name="rank", dtype=Int32),
        Field(name="active", dtype=Bool),
        Field(name="emb", dtype=Array(Float32)),
        Field(name="weights", dtype=Array(Float64)),
        Field(name="hist", dtype=Array(Int64)),
        Field(name="ranks", dtype=Array(Int32)),
    ],
    source=FileSource(path="data/drivers.parquet", timestamp_field="event_timestamp"),
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(hours=1),
    schema=[
        Field(name="customer_id", dtype=String),
        Field(name="score", dtype=Float64),
        Field(name="level", dtype=Int32),
        Field(name="flags", dtype=Array(Bool)),
    ],
    source=FileSource(path="data/customers.parquet", timestamp_field="event_timestamp"),
)
"""


def drivers(now: float) -> list[dict[str, Any]]:
    """Driver 1004 has nulls; 1005 is negative and large; 1006 is never written (a missing entity)."""
    ts = now - 120
    return [
        {"driver_id": 1001, "conv_rate": 0.25, "acc_rate": 0.1 + 0.2, "trips": 7, "rank": -3, "active": True,
         "emb": [0.1, -0.2, 0.3, 0.4], "weights": [1.5, 2.25], "hist": [1, 2, 3], "ranks": [4, -5], "ts": ts},
        {"driver_id": 1002, "conv_rate": 1.0 / 3, "acc_rate": 1e-300, "trips": 2**40, "rank": 2**31 - 1,
         "active": False, "emb": [1.0, 2.0, 3.0, 4.0], "weights": [0.0, -1.0], "hist": [-(2**40), 0, 5],
         "ranks": [0, 0], "ts": ts},
        {"driver_id": 1003, "conv_rate": -7.5, "acc_rate": 3.141592653589793, "trips": 0, "rank": 0, "active": True,
         "emb": [0.0, 0.0, 0.0, 1e-3], "weights": [3.0, 4.0], "hist": [9, 9, 9], "ranks": [1, 2], "ts": ts},
        {"driver_id": 1004, "conv_rate": None, "acc_rate": None, "trips": None, "rank": None, "active": None,
         "emb": None, "weights": None, "hist": None, "ranks": None, "ts": ts},
        {"driver_id": -(2**40), "conv_rate": 0.5, "acc_rate": -0.5, "trips": -1, "rank": -(2**31), "active": True,
         "emb": [9.0, 8.0, 7.0, 6.0], "weights": [1.0, 1.0], "hist": [1, 1, 1], "ranks": [7, 7], "ts": ts},
    ]  # fmt: skip


def customers(now: float) -> list[dict[str, Any]]:
    """c1, c2 are fresh; c3, c4 were written 3 days ago, older than the view's ttl of an hour."""
    return [
        {"customer_id": "c1", "score": 0.75, "level": 3, "flags": [True, False], "ts": now - 60},
        {"customer_id": "c2", "score": -2.5, "level": -1, "flags": [False, False], "ts": now - 60},
        {"customer_id": "c3", "score": 9.5, "level": 7, "flags": [True, True], "ts": now - 3 * 86400},
        {"customer_id": "c4 é", "score": 1.0, "level": 1, "flags": [True, False], "ts": now - 3 * 86400},
    ]


def setup(repo: Path, options: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    from feast import FeatureStore
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    now = time.time()
    (repo / "data").mkdir(parents=True, exist_ok=True)
    online = {"type": "redis", "connection_string": options["connection"]}
    if options.get("cluster"):
        online["redis_type"] = "redis_cluster"
    yaml = {
        "project": options["project"],
        "provider": "local",
        "registry": "data/registry.db",
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": options["version"],
    }
    (repo / "feature_store.yaml").write_text(json.dumps(yaml))  # JSON is YAML
    (repo / "definitions.py").write_text(FEATURE_REPO)
    extra = [  # more drivers for a benchmark (benchmarks/peers/feast_pipeline.py)
        {**drivers(now)[0], "driver_id": 2000 + i, "trips": i} for i in range(options.get("extra_drivers", 0))
    ]
    data = {"drivers": drivers(now) + extra, "customers": customers(now)}
    for name, rows in data.items():
        frame = pd.DataFrame([{k: v for k, v in r.items() if k != "ts"} for r in rows])
        frame["event_timestamp"] = pd.to_datetime([r["ts"] for r in rows], unit="s", utc=True)
        frame.to_parquet(repo / "data" / f"{name}.parquet")
    apply_total(load_repo_config(repo, repo / "feature_store.yaml"), repo, skip_source_validation=True)
    store = FeatureStore(repo_path=str(repo))
    store.materialize(datetime.now(UTC) - timedelta(days=10), datetime.now(UTC) + timedelta(minutes=1))
    return {"now": now, **data}


def read(repo: Path, options: dict[str, Any]) -> dict[str, Any]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    response = store.get_online_features(
        features=options["features"], entity_rows=options["rows"], full_feature_names=True
    )
    names = list(response.proto.metadata.feature_names.val)
    statuses = {n: [int(s) for s in r.statuses] for n, r in zip(names, response.proto.results, strict=True)}
    return {"values": response.to_dict(), "statuses": statuses}


def main() -> None:
    warnings.simplefilter("ignore")  # Feast warns about v2 keys and more
    repo, options, out = Path(sys.argv[1]).resolve(), json.loads(sys.argv[2]), Path(sys.argv[3]).resolve()
    os.chdir(repo)  # `feast apply` imports the repo's definitions.py by module name
    sys.path.insert(0, str(repo))
    result = setup(repo, options)
    result["reads"] = [read(repo, query) for query in options["reads"]]
    out.write_text(json.dumps(result))  # a file: `feast apply` prints to stdout


if __name__ == "__main__":
    main()
