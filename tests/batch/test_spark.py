"""sibyl.batch.spark on a real local Spark (local[2], Java 17): scores equal the real server's bit for bit, and a
feature snapshot written from Spark partitions equals `sibyl features load`'s. One Spark session for the module
(conftest.spark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import redis

from sibyl.batch import spark as sibyl_spark
from sibyl.cli.main import main
from sibyl.config import EXAMPLE_FEATURES
from tests.batch.example_case import STORE_URL, load_example_features, make_case
from tests.batch.server_answers import server_scores
from tests.support.feature_snapshots import dump, example_records
from tests.support.redis_servers import RedisServer

ROWS = 40_000


def test_spark_scores_equal_the_servers_bit_for_bit(spark: Any, tmp_path: Path, fresh_redis: RedisServer) -> None:
    """40k rows in 4 partitions through mapInArrow, features from Redis: the same float32 scores as gRPC Predict
    on a real server, for the primary and an extra model, and the same defaulted features per row."""
    root = str(Path(__file__).resolve().parents[2])
    where = spark.sparkContext.parallelize([0], 1).map(lambda _: __import__("sibyl").__file__).collect()[0]
    assert where.startswith(root), f"Spark's workers import {where}, not this checkout"
    features = load_example_features(fresh_redis)
    case = make_case(ROWS, seed=11)
    expected, expected_defaulted = server_scores(tmp_path, case, features, ["mlp@1"])
    import pyarrow as pa

    table = case.table()
    table = table.append_column("row", pa.array(np.arange(ROWS)))
    df = spark.createDataFrame(table).repartition(4)
    scored = sibyl_spark.score(df, STORE_URL, "example", extra_models=["mlp@1"], features=features)
    assert scored.schema["score_gbdt"].metadata == {"sibyl.model": "gbdt@1"}
    out = scored.select("row", "score_gbdt", "score_mlp", "defaulted").toArrow().sort_by("row")
    assert out.column("row").to_pylist() == list(range(ROWS))
    assert np.array_equal(out.column("score_gbdt").to_numpy(), expected["gbdt@1"])
    assert np.array_equal(out.column("score_mlp").to_numpy(), expected["mlp@1"])
    assert [set(d) for d in out.column("defaulted").to_pylist()] == expected_defaulted


def test_feature_snapshot_from_spark_partitions(spark: Any, fresh_redis: RedisServer) -> None:
    """foreachPartition-style writes under a new prefix: the same keys, bytes and TTLs as `sibyl features load`."""
    assert main(["features", "load", str(EXAMPLE_FEATURES), "--url", fresh_redis.url, "--prefix", "cli:v2", "--ttl", "900"]) == 0  # fmt: skip
    written = 0
    for entity in ("consumer_id", "store_id"):
        df = spark.createDataFrame(example_records(entity)).repartition(3)
        written += sibyl_spark.write_features(
            df, entity=entity, id_column="id", url=fresh_redis.url, prefix="spark:v2", ttl_s=900, store_url=STORE_URL
        )
    assert written == 300
    client = redis.Redis.from_url(fresh_redis.url)
    try:
        snapshot = dump(client, "spark:v2")
        assert snapshot == dump(client, "cli:v2") and len(snapshot) == 300
    finally:
        client.close()


def test_the_example_job_snapshots_then_scores_with_it(spark: Any, fresh_redis: RedisServer, tmp_path: Path) -> None:
    """examples/spark_job.py: the snapshot it writes serves its scoring; the same orders scored in one process
    from a `sibyl features load` of the same file give the same scores."""
    import importlib.util

    import pyarrow.parquet as pq

    from sibyl.batch import BatchScorer

    path = Path(__file__).resolve().parents[2] / "examples" / "spark_job.py"
    spec = importlib.util.spec_from_file_location("spark_job", path)
    assert spec is not None and spec.loader is not None
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    job.run(spark, fresh_redis.url, prefix="job:v2", out=str(tmp_path / "scored"))
    scored = pq.read_table(tmp_path / "scored").sort_by("order_id")
    assert scored.num_rows == 500
    assert scored.column("defaulted").to_pylist()[200] == ["consumer_orders_30d", "consumer_avg_basket_usd",
        "consumer_days_since_order", "consumer_app_opens_7d", "consumer_emb"]  # fmt: skip
    features = load_example_features(fresh_redis, prefix="cli:v1")
    local = BatchScorer.load(STORE_URL, "example", features=features)
    inputs = scored.drop_columns(["score_gbdt", "score_mlp", "prediction_id", "defaulted"])
    expected = local.score(inputs)
    assert np.array_equal(scored.column("score_gbdt").to_numpy(), expected.column("score_gbdt").to_numpy())
