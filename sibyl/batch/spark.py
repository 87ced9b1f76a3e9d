"""Spark: score a DataFrame with `mapInArrow` (Arrow batches straight into numpy, no per-row Python), and write
feature snapshots into Redis from its partitions. Needs `pip install 'sibyl[spark]'` (pyspark, pyarrow) and Java.

    from sibyl.batch import spark as sibyl_spark
    scored = sibyl_spark.score(df, "s3://models/prod", "eta", features={"backend": "redis", "url": "redis://..."})

The models are read and pinned once, on the driver; the Bundle (manifests + model bytes + settings) is broadcast,
so each executor fetches it once and each Python worker builds its scorer once (BatchScorer.shared) and keeps it
across tasks (spark.python.worker.reuse, on by default).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Unpack

from sibyl.batch.scorer import BatchScorer, Bundle
from sibyl.errors import MissingDependency
from sibyl.features.bulk import SnapshotTarget, partition_options, write_partition


def _pyspark_types() -> Any:
    try:
        from pyspark.sql import types
    except ImportError:
        raise MissingDependency("pyspark", "spark", "scoring Spark DataFrames") from None
    return types


def output_schema(df: Any, scorer: BatchScorer) -> Any:
    """df's schema plus one float (or array<float>) column per model, prediction_id and defaulted."""
    t = _pyspark_types()
    fields = list(df.schema.fields)
    for name, model, ref in zip(scorer.score_columns, scorer.models, scorer.refs, strict=True):
        kind = t.FloatType() if model.dim == 1 else t.ArrayType(t.FloatType(), containsNull=False)
        fields.append(t.StructField(name, kind, nullable=False, metadata={"sibyl.model": ref}))
    fields.append(t.StructField("prediction_id", t.StringType(), nullable=False))
    fields.append(t.StructField("defaulted", t.ArrayType(t.StringType(), containsNull=False), nullable=False))
    return t.StructType(fields)


def _score_batches(bundle: Any, batches: Iterator[Any]) -> Iterator[Any]:
    scorer = BatchScorer.shared(bundle.value if hasattr(bundle, "value") else bundle)
    for batch in batches:
        yield scorer.score(batch)


def score(
    df: Any,
    store_url: str | None = None,
    target: str | None = None,
    *,
    scorer: BatchScorer | None = None,
    broadcast: bool = True,
    **load: Any,
) -> Any:
    """df with the score columns, prediction_id and defaulted (BatchScorer.score per Arrow batch).

    Give store_url and target (and BatchScorer.load's keywords: extra_models, features, context, ...), or a loaded
    scorer. broadcast=False ships the bundle inside the task closure instead (once per task).
    """
    if scorer is None:
        if store_url is None or target is None:
            raise TypeError("score() needs store_url and target, or scorer=")
        scorer = BatchScorer.load(store_url, target, **load)
    bundle: Bundle | Any = scorer.bundle
    if broadcast:
        bundle = df.sparkSession.sparkContext.broadcast(scorer.bundle)
    return df.mapInArrow(functools.partial(_score_batches, bundle), output_schema(df, scorer))


def _written(writer: dict[str, Any], records: Iterator[Any]) -> Iterator[int]:
    yield write_partition(records, **writer)


def write_features(df: Any, **target: Unpack[SnapshotTarget]) -> int:
    """Every row of df into Redis under `prefix` (a new snapshot: switch features.prefix to it once written), one
    pipelined SnapshotWriter per partition; returns the entities written. Dtypes come from the manifests in
    store_url (as `sibyl features load` takes them from the model store), else from the values."""
    options = partition_options(**target)
    return int(df.rdd.mapPartitions(functools.partial(_written, options)).sum())
