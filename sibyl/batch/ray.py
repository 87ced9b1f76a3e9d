"""Ray Data: score a Dataset with `map_batches` over an actor pool (the scorer built once per actor), and write
feature snapshots into Redis from its blocks. Needs `pip install 'sibyl[ray]'` (ray[data], pyarrow).

    from sibyl.batch import ray as sibyl_ray
    scored = sibyl_ray.score(ds, "s3://models/prod", "eta", concurrency=8)

The models are read and pinned once, by the caller; the Bundle goes to the actors through Ray's object store.
"""

from __future__ import annotations

import functools
from typing import Any, Unpack

from sibyl.batch.scorer import BatchScorer, Bundle
from sibyl.errors import MissingDependency
from sibyl.features.bulk import SnapshotTarget, partition_options, write_partition


class ScoreActor:
    """One per actor: the scorer is built in __init__, then every batch reuses it."""

    def __init__(self, bundle: Bundle) -> None:
        self.scorer = BatchScorer(bundle)

    def __call__(self, batch: Any) -> Any:
        return self.scorer.score(batch)


def _pool(concurrency: int | tuple[int, int] | None) -> Any:
    """An actor pool: `concurrency` actors, or (min, max); default (1, CPUs), which grows as CPUs free up."""
    try:
        import ray
        from ray.data import ActorPoolStrategy
    except ImportError:
        raise MissingDependency("ray", "ray", "scoring Ray Datasets") from None
    if isinstance(concurrency, int):
        return ActorPoolStrategy(size=concurrency)
    if concurrency is None:
        # ray ships types, but leaves cluster_resources() unannotated.
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        concurrency = (1, max(1, cpus))
    low, high = concurrency
    return ActorPoolStrategy(min_size=low, max_size=high)


def score(
    ds: Any,
    store_url: str | None = None,
    target: str | None = None,
    *,
    scorer: BatchScorer | None = None,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float = 1.0,
    batch_size: int = 10_000,
    **load: Any,
) -> Any:
    """ds with the score columns, prediction_id and defaulted, by an actor pool of `concurrency` actors (or a
    (min, max) range; default (1, CPUs)) of `num_cpus` each. A fixed pool that holds every CPU starves the tasks
    that feed it (a read or a shuffle then waits forever: seen on 2 CPUs); the default range starts with one
    actor and grows while CPUs are free.

    Give store_url and target (and BatchScorer.load's keywords), or a loaded scorer.
    """
    if scorer is None:
        if store_url is None or target is None:
            raise TypeError("score() needs store_url and target, or scorer=")
        scorer = BatchScorer.load(store_url, target, **load)
    return ds.map_batches(
        ScoreActor,
        fn_constructor_kwargs={"bundle": scorer.bundle},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=_pool(concurrency),
        num_cpus=num_cpus,
        zero_copy_batch=True,
    )


def _write_batch(options: dict[str, Any], batch: Any) -> Any:
    import pyarrow as pa

    return pa.table({"written": [write_partition(batch.to_pylist(), **options)]})


def write_features(ds: Any, **target: Unpack[SnapshotTarget]) -> int:
    """Every row of ds into Redis under `prefix`, one pipelined SnapshotWriter per block; returns the entities
    written (see sibyl.batch.spark.write_features)."""
    options = partition_options(**target)
    written = ds.map_batches(functools.partial(_write_batch, options), batch_format="pyarrow", batch_size=None)
    return int(written.sum("written") or 0)
