"""sibyl.batch.ray on a real local Ray (num_cpus=2): an actor pool's scores equal the real server's bit for bit, and a
feature snapshot written from Ray blocks equals `sibyl features load`'s. One Ray instance for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from sibyl.batch import ray as sibyl_ray
from sibyl.cli.main import main
from sibyl.config import EXAMPLE_FEATURES
from tests.batch.engines import requires, worker_env
from tests.batch.example_case import STORE_URL, load_example_features, make_case
from tests.batch.server_answers import server_scores
from tests.support.feature_snapshots import dump, example_records
from tests.support.redis_servers import RedisServer

ROWS = 20_000


@pytest.fixture(scope="module")
def ray_data() -> Iterator[Any]:
    ray = requires("ray", "pip install 'sibyl[ray]'")
    data = requires("ray.data", "pip install 'sibyl[ray]'")
    with worker_env():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        data.DataContext.get_current().enable_progress_bars = False
        try:
            yield data
        finally:
            ray.shutdown()


def test_ray_scores_equal_the_servers_bit_for_bit(ray_data: Any, tmp_path: Path, fresh_redis: RedisServer) -> None:
    """20k rows in 4 blocks through 2 scoring actors, features from Redis: the same float32 scores and defaulted
    features per row as gRPC Predict on a real server."""
    import pyarrow as pa
    import ray

    root = str(Path(__file__).resolve().parents[2])
    where = ray.get(ray.remote(lambda: __import__("sibyl").__file__).remote())
    assert where.startswith(root), f"Ray's workers import {where}, not this checkout"
    features = load_example_features(fresh_redis)
    case = make_case(ROWS, seed=13)
    expected, expected_defaulted = server_scores(tmp_path, case, features, ["mlp@1"])
    table = case.table().append_column("row", pa.array(np.arange(ROWS)))
    # Four blocks made here: a repartition (shuffle tasks) waits forever for CPUs the two actors hold on 2 CPUs.
    ds = ray_data.from_arrow([table.slice(start, ROWS // 4) for start in range(0, ROWS, ROWS // 4)])
    scored = sibyl_ray.score(ds, STORE_URL, "example", extra_models=["mlp@1"], features=features, concurrency=2)
    refs = scored.select_columns(["row", "score_gbdt", "score_mlp", "defaulted"]).to_arrow_refs()
    out = pa.concat_tables(ray.get(refs))
    out = out.sort_by("row")
    assert out.column("row").to_pylist() == list(range(ROWS))
    assert np.array_equal(out.column("score_gbdt").to_numpy(), expected["gbdt@1"])
    assert np.array_equal(out.column("score_mlp").to_numpy(), expected["mlp@1"])
    assert [set(d) for d in out.column("defaulted").to_pylist()] == expected_defaulted


def test_feature_snapshot_from_ray_blocks(ray_data: Any, fresh_redis: RedisServer) -> None:
    import pyarrow as pa

    assert main(["features", "load", str(EXAMPLE_FEATURES), "--url", fresh_redis.url, "--prefix", "cli:v3"]) == 0
    written = 0
    for entity in ("consumer_id", "store_id"):
        records = pa.Table.from_pylist(example_records(entity))
        ds = ray_data.from_arrow([records.slice(0, 40), records.slice(40)])
        written += sibyl_ray.write_features(
            ds, entity=entity, id_column="id", url=fresh_redis.url, prefix="ray:v3", store_url=STORE_URL
        )
    assert written == 300
    client = redis.Redis.from_url(fresh_redis.url)
    try:
        assert dump(client, "ray:v3") == dump(client, "cli:v3")
    finally:
        client.close()
