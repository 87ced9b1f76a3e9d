"""A batch job on Spark with the bundled store: write a feature snapshot into Redis under a new prefix, then score
orders that lack the consumer features with them (docs/batch.md).

    redis-server --port 6379 --save "" --daemonize yes
    PYSPARK_PYTHON=$(which python) python examples/spark_job.py --redis redis://127.0.0.1:6379/0 --out scored/

1. features.jsonl (200 consumers, 100 stores) -> one DataFrame per entity -> `sibyl.batch.spark.write_features`:
   one pipelined writer per partition, the layout, encodings and TTL of `sibyl features load`, under `--prefix`
   (a new snapshot beside the one the servers read; switch SIBYL_FEATURES__PREFIX to it when it is complete).
2. sample.csv without the consumer columns, plus consumer and store ids -> `sibyl.batch.spark.score`: the models
   pinned and broadcast once, features from the new snapshot, manifest defaults for unknown consumers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sibyl.batch import spark as sibyl_spark
from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE

STORE_URL = f"file://{EXAMPLE_STORE}"
SAMPLE = Path(EXAMPLE_FEATURES).parent / "sample.csv"
CONSUMER_COLUMNS = ["consumer_orders_30d", "consumer_avg_basket_usd", "consumer_days_since_order",
                    "consumer_app_opens_7d"] + [f"consumer_emb[{i}]" for i in range(4)]  # fmt: skip


def write_snapshot(spark: Any, redis_url: str, prefix: str, ttl_s: float | None) -> int:
    rows = [json.loads(line) for line in Path(EXAMPLE_FEATURES).read_text().splitlines() if line.strip()]
    written = 0
    for entity in ("consumer_id", "store_id"):
        records = [{"id": r["id"], **r["features"]} for r in rows if r["entity"] == entity]
        df = spark.createDataFrame(records).repartition(2)
        written += sibyl_spark.write_features(
            df, entity=entity, id_column="id", url=redis_url, prefix=prefix, ttl_s=ttl_s, store_url=STORE_URL
        )
    return written


def orders(spark: Any) -> Any:
    """sample.csv's 500 orders without the consumer features; consumers 1-250 (201-250 unknown), stores 1-100."""
    from pyspark.sql import functions as f

    df = spark.read.csv(str(SAMPLE), header=True, inferSchema=True).drop(*CONSUMER_COLUMNS)
    df = df.withColumn("order_id", f.monotonically_increasing_id())
    df = df.withColumn("consumer_id", (f.col("order_id") % 250 + 1).cast("string"))
    return df.withColumn("store_id", (f.col("order_id") % 100 + 1).cast("string"))


def run(
    spark: Any, redis_url: str, prefix: str = "sibyl:v2", out: str | None = None, ttl_s: float | None = None
) -> Any:
    """Snapshot, then score; returns the scored DataFrame (written as Parquet to `out` if given)."""
    written = write_snapshot(spark, redis_url, prefix, ttl_s)
    print(f"snapshot: {written} entities under {prefix}", file=sys.stderr)
    features = {"backend": "redis", "url": redis_url, "prefix": prefix}
    scored = sibyl_spark.score(orders(spark), STORE_URL, "example", extra_models=["mlp@1"], features=features)
    if out:
        scored.write.mode("overwrite").parquet(out)
    return scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL for the snapshot")
    parser.add_argument("--prefix", default="sibyl:v2", help="the new snapshot's key prefix")
    parser.add_argument("--ttl", type=float, help="expire the snapshot's keys after SECONDS")
    parser.add_argument("--out", help="write the scored orders here as Parquet")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(args.master).appName("sibyl-example")
        .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1").getOrCreate()
    )  # fmt: skip
    try:
        scored = run(spark, args.redis, args.prefix, args.out, args.ttl)
        scored.select("order_id", "consumer_id", "score_gbdt", "score_mlp", "defaulted").show(5, truncate=False)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
