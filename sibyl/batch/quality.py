"""Model quality on Spark from the archive (`sibyl predlog archive`): the same metrics as `sibyl monitor`, computed by
the same code (sibyl.quality), for backfills and 30-day reports. Needs `pip install 'sibyl[spark]'` and Java.

    from sibyl.batch import quality
    report = quality.evaluate(spark, "/data/sibyl-archive", store_url="s3://models/prod", since=..., until=...)
    for row in report.rows(): print(row)   # predictor, model, version, role, slice, n, auc, log_loss, brier, ...

The job (docs/monitoring.md#batch-archive-and-spark):
1. outcomes: one per (prediction_id, row), the first observed (ties by value): `sibyl monitor` keeps the first
   to arrive and counts the rest as duplicates;
2. slices: the predictor's (from the model store, or `slices=`) on each call's answering record (primary or arm),
   as the server and the monitor label them; the order-dependent choices (values of a feature without edges,
   heavy-hitter entities) are made once for the period from Spark counts (slicing.choose), then every partition
   labels its rows without state (mapInArrow). Rows without an answering record count under "all" only;
3. the join: every model's row (primary, shadows, arms) with its outcome when the outcome was observed at most
   `window_s` after the prediction (the monitor's window, read at arrival instead: see the docs), and its labels;
4. per partition (mapInArrow), one sibyl.quality BinaryStats per (predictor, model, version, role, slice),
   shipped as to_bytes(); the driver merges them (BinaryStats.combine) per group. Nothing per row reaches the
   driver, so the period's length costs executors, not driver memory.
Labels must be 0 or 1 and scores in [0, 1] (a binary model's first output column); other rows are counted as
skipped per model.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sibyl.batch.archive import ENTITY, FEATURE, OUTCOMES, PREDICTIONS
from sibyl.batch.slicing import ArchivedRows, SlicePlan, choose, order_dependent
from sibyl.errors import MissingDependency
from sibyl.models.predictor import Slice
from sibyl.quality.stats import BinaryStats

ANSWERING = ("primary", "experiment")  # the record whose inputs label a call's rows (as sibyl.monitor does)
WEEK_S = 7 * 86_400.0
GROUP = ("predictor", "model", "version", "role", "slice")
Group = tuple[str, str, str, str, str]


def _spark() -> tuple[Any, Any]:
    try:
        from pyspark.sql import functions, types
    except ImportError:
        raise MissingDependency("pyspark", "spark", "the Spark quality job") from None
    return functions, types


@dataclass
class QualityReport:
    """Merged statistics per (predictor, model, version, role, slice), and rows skipped per model."""

    stats: dict[Group, BinaryStats] = field(default_factory=dict)
    skipped: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    plans: dict[str, SlicePlan] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per group: its keys, n, weight, label_rate, auc, log_loss, brier, ece (None where undefined)."""
        out = []
        for key in sorted(self.stats):
            s = self.stats[key]
            metrics = {"n": s.n, "weight": s.weight, "label_rate": s.label_rate(), "auc": s.auc(),
                       "log_loss": s.log_loss(), "brier": s.brier(), "ece": s.ece()}  # fmt: skip
            out.append(dict(zip(GROUP, key, strict=True)) | metrics)
        return out


def _label_batches(plans: Mapping[str, SlicePlan], features: list[str], entities: list[str],
                   batches: Iterator[Any]) -> Iterator[Any]:  # fmt: skip
    """Answering rows -> (prediction_id, row, slices): each predictor's plan on each Arrow batch."""
    import pyarrow as pa

    for batch in batches:
        predictors = np.asarray(batch.column("predictor").to_pylist(), dtype=object)
        labels: list[Any] = []  # per predictor: its rows' positions and their labels as a [rows, 1 + slices] array
        for name in set(predictors.tolist()):
            at = np.flatnonzero(predictors == name)
            plan = plans.get(name)
            if plan is None:
                labels.append((at, np.full((at.size, 1), "all", dtype=object)))
                continue
            part = batch.take(pa.array(at))
            rows = ArchivedRows(
                part.num_rows,
                {f: part.column(FEATURE + f).to_numpy(zero_copy_only=False).astype(np.float32) for f in features},
                {e: part.column(ENTITY + e).to_pylist() for e in entities},
                part.column("defaulted").to_pylist(),
            )
            labels.append((at, np.stack(plan.columns(rows), axis=1)))
        width = max((texts.shape[1] for _, texts in labels), default=1)
        grid = np.empty((batch.num_rows, width), dtype=object)  # predictors with fewer slices leave cells unused
        counts = np.zeros(batch.num_rows, np.int32)
        for at, texts in labels:
            grid[at, : texts.shape[1]] = texts
            counts[at] = texts.shape[1]
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
        flat = pa.array(grid[np.arange(width) < counts[:, None]], pa.string())
        yield pa.RecordBatch.from_pydict({
            "prediction_id": batch.column("prediction_id"),
            "row": batch.column("row"),
            "slices": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat),
        })  # fmt: skip


def _groups(codes: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct code tuples [groups, columns], each row's group): one int64 per row (mixed radix) sorts ~10x
    faster than np.unique over rows of a 2-D array, which this falls back to if the radix overflows."""
    if float(np.prod(np.asarray(sizes, np.float64))) >= 2.0**62:
        groups, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        return groups, inverse.ravel()
    key = np.zeros(codes[0].size, np.int64)
    for code, size in zip(codes, sizes, strict=True):
        key = key * size + code
    distinct, inverse = np.unique(key, return_inverse=True)
    groups = np.empty((distinct.size, len(codes)), np.int64)
    for j in range(len(codes) - 1, -1, -1):
        distinct, groups[:, j] = np.divmod(distinct, sizes[j])
    return groups, inverse.ravel()


def _stats_batches(batches: Iterator[Any]) -> Iterator[Any]:
    """Joined rows, one per slice label -> one BinaryStats (as bytes) per group seen in this partition, and the rows
    skipped per model. Rows are grouped with numpy (dictionary codes of the key columns), not a Python step per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found: dict[Group, BinaryStats] = {}
    skipped: dict[tuple[str, str, str, str], int] = {}
    for batch in batches:
        codes, names = [], []
        for column in GROUP:
            encoded = pc.dictionary_encode(pc.fill_null(batch.column(column), ""))
            codes.append(encoded.indices.to_numpy(zero_copy_only=False))
            names.append(encoded.dictionary.to_pylist())
        y = batch.column("value").to_numpy(zero_copy_only=False)
        s = batch.column("score").to_numpy(zero_copy_only=False)
        w = batch.column("weight").to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            good = ((y == 0.0) | (y == 1.0)) & (s >= 0.0) & (s <= 1.0) & np.isfinite(w) & (w >= 0.0)
        groups, inverse = _groups(codes, [len(n) for n in names])
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        for g, rows in enumerate(np.split(order, bounds)):
            key: Group = tuple(str(names[j][groups[g, j]]) for j in range(len(GROUP)))  # type: ignore[assignment]
            kept = rows[good[rows]]
            if kept.size < rows.size and key[4] == "all":  # each joined row has exactly one "all" label
                model_key = key[:4]
                skipped[model_key] = skipped.get(model_key, 0) + int(rows.size - kept.size)
            if kept.size:
                stats = found.get(key)
                if stats is None:
                    stats = found[key] = BinaryStats()
                stats.add(y[kept], s[kept], w[kept])
    keys = [*found, *((*model_key, "") for model_key in skipped)]
    if keys:
        columns: dict[str, Any] = {name: [k[j] for k in keys] for j, name in enumerate(GROUP)}
        blobs = [stats.to_bytes() for stats in found.values()] + [b""] * len(skipped)
        counts = [0] * len(found) + list(skipped.values())
        yield pa.RecordBatch.from_pydict(columns | {"stats": pa.array(blobs, pa.binary()), "skipped": counts})


def read_archive(spark: Any, archive: str, since: datetime | None = None, until: datetime | None = None,
                 predictors: Sequence[str] | None = None) -> tuple[Any, Any]:  # fmt: skip
    """(predictions, outcomes) DataFrames of the archive; predictions sent in [since, until) (naive datetimes are
    UTC) of `predictors`. Partition values stay strings: a predictor named "007" is not the number 7."""
    F, _ = _spark()
    root = archive.rstrip("/")
    inference = "spark.sql.sources.partitionColumnTypeInference.enabled"
    before = spark.conf.get(inference, "true")
    spark.conf.set(inference, "false")  # read when the relation is made (partition discovery), so only here
    try:
        predictions = spark.read.option("mergeSchema", "true").parquet(f"{root}/{PREDICTIONS}")
        outcomes = spark.read.parquet(f"{root}/{OUTCOMES}")
    finally:
        spark.conf.set(inference, before)
    if predictors is not None:
        predictions = predictions.where(F.col("predictor").isin(list(predictors)))
    # The date partitions first (pruned without reading a file), then the exact time.
    if since is not None:
        day, at = _utc(since)
        predictions = predictions.where((F.col("date") >= day) & (F.col("sent_at") >= F.lit(at)))
    if until is not None:
        day, at = _utc(until)
        predictions = predictions.where((F.col("date") <= day) & (F.col("sent_at") < F.lit(at)))
    return predictions, outcomes


def _utc(bound: datetime) -> tuple[str, datetime]:
    """(its UTC date as the partitions spell it, the instant), a naive datetime taken as UTC."""
    utc = bound.astimezone(UTC) if bound.tzinfo else bound.replace(tzinfo=UTC)
    return utc.date().isoformat(), utc


def _slices_of(store_url: str | None, names: list[str]) -> dict[str, list[Slice]]:
    if store_url is None:
        return {}
    from sibyl.models.catalog import Catalog
    from sibyl.models.store import open_store

    catalog = Catalog(open_store(store_url))
    known = set(catalog.predictor_names())
    return {name: list(catalog.read_predictor(name).slices) for name in names if name in known}


def plan(answering: Any, predictor: str, slices: list[Slice]) -> SlicePlan:
    """The predictor's slice plan: one Spark count per order-dependent slice over its answering rows."""
    F, _ = _spark()
    rows = answering.where(F.col("predictor") == predictor)
    counts: dict[str, list[tuple[Any, int]]] = {}
    for spec in order_dependent(slices):
        column = ENTITY + spec.entity if spec.entity is not None else FEATURE + str(spec.feature)
        if column in rows.columns:
            counted = rows.groupBy(column).count().collect()
            counts[spec.name] = [(r[0], int(r[1])) for r in counted]
    return choose(slices, counts)


def evaluate(
    spark: Any,
    archive: str,
    *,
    store_url: str | None = None,
    slices: Mapping[str, list[Slice]] | None = None,
    predictors: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    window_s: float = WEEK_S,
) -> QualityReport:
    """Quality per (predictor, model, version, role, slice) of the predictions sent in [since, until) (timezone-aware
    datetimes; None: unbounded) joined with their outcomes. Slices: `slices` (predictor -> its slices), else each
    predictor's config in `store_url`, else "all" only."""
    F, T = _spark()
    predictions, outcomes = read_archive(spark, archive, since, until, predictors)
    names = sorted(r[0] for r in predictions.select("predictor").distinct().collect())
    chosen = dict(slices) if slices is not None else _slices_of(store_url, names)
    answering = predictions.where(F.col("role").isin(list(ANSWERING)))
    plans = {name: plan(answering, name, chosen[name]) for name in names if chosen.get(name)}
    needed = [s for p in plans.values() for s in p.slices]
    features = sorted({str(s.feature) for s in needed if s.feature is not None} |
                      {str(s.defaulted) for s in needed if s.defaulted is not None})  # fmt: skip
    features = [f for f in features if FEATURE + f in predictions.columns]
    entities = sorted(
        {str(s.entity) for s in needed if s.entity is not None and ENTITY + s.entity in predictions.columns}
    )
    label_schema = T.StructType([
        T.StructField("prediction_id", T.StringType()), T.StructField("row", T.IntegerType()),
        T.StructField("slices", T.ArrayType(T.StringType())),
    ])  # fmt: skip
    answering_cols = ["predictor", "prediction_id", "row", "defaulted",
                      *(FEATURE + f for f in features), *(ENTITY + e for e in entities)]  # fmt: skip
    labels = (
        answering.select(*answering_cols)
        .mapInArrow(functools.partial(_label_batches, plans, features, entities), label_schema)
        .dropDuplicates(["prediction_id", "row"])
    )
    first = outcomes.groupBy("prediction_id", "row").agg(
        F.min_by(F.struct("value", "weight", "observed_at"), F.struct("observed_at", "value", "weight")).alias("o")
    )
    joined = (
        predictions.select("predictor", "model", "version", "role", "prediction_id", "row", "score", "sent_at")
        .join(first, ["prediction_id", "row"])
        .where(F.unix_micros("o.observed_at") <= F.unix_micros("sent_at") + int(window_s * 1e6))
        .join(labels, ["prediction_id", "row"], "left")
        .select(
            "predictor",
            "model",
            "version",
            "role",
            "score",
            F.col("o.value").alias("value"),
            F.col("o.weight").alias("weight"),
            F.explode(F.coalesce("slices", F.array(F.lit("all")))).alias("slice"),
        )
    )
    stats_schema = T.StructType([*(T.StructField(c, T.StringType()) for c in GROUP),
                                 T.StructField("stats", T.BinaryType()), T.StructField("skipped", T.LongType())])  # fmt: skip
    parts = joined.mapInArrow(_stats_batches, stats_schema).collect()
    report = QualityReport(plans=plans)
    grouped: dict[Group, list[BinaryStats]] = {}
    for r in parts:
        if r["stats"]:
            grouped.setdefault(tuple(r[c] for c in GROUP), []).append(BinaryStats.from_bytes(bytes(r["stats"])))
        else:
            model_key = (r["predictor"], r["model"], r["version"], r["role"])
            report.skipped[model_key] = report.skipped.get(model_key, 0) + int(r["skipped"])
    report.stats = {key: BinaryStats.combine(parts_) for key, parts_ in grouped.items()}
    return report
