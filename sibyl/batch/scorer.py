"""BatchScorer: the server's feature assembly and inference over whole tables, with no event loop, no thread, no
polling and no log unless asked.

    scorer = BatchScorer.load("file:///models", "example", features={"backend": "redis", "url": "redis://..."})
    scored = scorer.score(table)        # pyarrow.Table / RecordBatch / pandas.DataFrame -> the same type

Versions are pinned at load: a predictor name means its primary as the store says now, "model@version" that
version; extra_models adds more (each gets a score column). Per chunk of `chunk_rows` rows it runs what the
server runs per request, on the same code (serving.assembly, models.runtime): the table's values, then the
feature store for what is missing (one deduplicated, pipelined read per chunk of entities), then the manifest
defaults; one session.run per model. A Bundle (manifests + model bytes + settings, picklable) rebuilds the same
scorer in a Spark or Ray worker without reading the store again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sibyl.batch import table as tables
from sibyl.batch.log import BatchLog
from sibyl.errors import InvalidArgument, ModelStoreError, NotFound
from sibyl.features.bulk import FeatureReader, open_reader
from sibyl.features.settings import FeatureSettings
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import Manifest
from sibyl.models.predictor import ModelRef
from sibyl.models.runtime import OnnxModel
from sibyl.models.store import open_store
from sibyl.serving import assembly
from sibyl.serving.decode import RowBatch

PREDICTION_ID, DEFAULTED = "prediction_id", "defaulted"


@dataclass(frozen=True)
class Bundle:
    """Everything a worker needs to rebuild the scorer, pinned at load: shipped once per executor or actor."""

    target: str
    models: tuple[tuple[str, bytes], ...]  # (manifest JSON, model.onnx bytes); the target's model first
    features: dict[str, Any] = field(default_factory=lambda: {"backend": "none"})  # FeatureSettings fields
    context: tuple[tuple[str, str], ...] = ()  # entity ids shared by every row
    chunk_rows: int = 65_536
    fetch_entities: int = 10_000  # entities per pipelined feature-store read
    intra_op_threads: int = 1
    log: BatchLog | None = None

    @property
    def key(self) -> str:
        """Identifies this bundle's contents: a worker keeps one scorer per key."""
        h = hashlib.sha256(json.dumps([self.target, self.features, self.context, self.chunk_rows]).encode())
        for manifest, _ in self.models:
            h.update(manifest.encode())
        h.update(repr((self.fetch_entities, self.intra_op_threads, self.log)).encode())
        return h.hexdigest()


def _target_ref(catalog: Catalog, target: str) -> ModelRef:
    """The model version a target names: model@version as given, else the predictor's primary as of now."""
    if "@" in target:
        return ModelRef.parse(target)
    try:
        return ModelRef.parse(catalog.read_predictor(target).primary)
    except (NotFound, ModelStoreError) as exc:  # the message names the store
        raise type(exc)(f"{exc}; give a predictor name or model@version") from None


_workers: dict[str, BatchScorer] = {}  # per process: one scorer per bundle (Spark tasks, Ray batches reuse it)


class BatchScorer:
    def __init__(self, bundle: Bundle) -> None:
        if bundle.chunk_rows < 1 or bundle.fetch_entities < 1:
            raise InvalidArgument("chunk_rows and fetch_entities must be at least 1")
        self.bundle = bundle
        self.features = FeatureSettings.model_validate(bundle.features)
        self.models = [OnnxModel(Manifest.model_validate_json(m), b, bundle.intra_op_threads) for m, b in bundle.models]
        self.refs = [m.manifest.ref for m in self.models]
        self.layout = assembly.layout(self.models)
        self.context = dict(bundle.context)
        names = [m.name for m in self.models]
        self.score_columns = [
            f"score_{m.name}" if names.count(m.name) == 1 else f"score_{m.name}_{m.version}" for m in self.models
        ]
        if len(set(self.score_columns)) != len(self.score_columns):
            raise InvalidArgument(f"models {self.refs} are listed twice")
        self.outputs = [*self.score_columns, PREDICTION_ID, DEFAULTED]
        vectors = {s.name for s in self.layout.specs if s.dtype != "float"}
        self.inputs = set(self.layout.columns) | vectors | {g.entity for g in self.layout.entity_groups}
        self._reader: FeatureReader | None = None
        self._log: Any = None

    @classmethod
    def load(
        cls,
        store_url: str,
        target: str,
        *,
        extra_models: Sequence[str] = (),
        features: FeatureSettings | Mapping[str, Any] | None = None,
        context: Mapping[str, str] | None = None,
        chunk_rows: int = 65_536,
        fetch_entities: int = 10_000,
        intra_op_threads: int = 1,
        log: BatchLog | None = None,
        s3_endpoint_url: str | None = None,
        s3_region: str = "us-east-1",
    ) -> BatchScorer:
        """Read and pin the models now; features: FeatureSettings (or its fields), default backend "none"."""
        catalog = Catalog(open_store(store_url, s3_endpoint_url, s3_region))
        refs = [_target_ref(catalog, target)] + [catalog.resolve(ModelRef.parse(text)) for text in extra_models]
        models = tuple((catalog.read_manifest(r).model_dump_json(), catalog.read_model(r)) for r in refs)
        if isinstance(features, FeatureSettings):
            features = features.model_dump()
        settings = FeatureSettings.model_validate({"backend": "none", **(features or {})})
        bundle = Bundle(
            target,
            models,
            settings.model_dump(),
            tuple(sorted((context or {}).items())),
            chunk_rows,
            fetch_entities,
            intra_op_threads,
            log,
        )
        return cls(bundle)

    @classmethod
    def shared(cls, bundle: Bundle) -> BatchScorer:
        """This process's scorer for the bundle, built on first use (a Spark task or Ray batch reuses it)."""
        scorer = _workers.get(bundle.key)
        if scorer is None:
            scorer = _workers[bundle.key] = cls(bundle)
        return scorer

    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchScorer, (self.bundle,))

    @property
    def reader(self) -> FeatureReader:
        if self._reader is None:  # opened on first need: loading and pickling never touch the feature store
            self._reader = open_reader(self.features, self.bundle.fetch_entities)
        return self._reader

    # ---- scoring
    def score_rows(self, batch: RowBatch) -> tuple[assembly.Plan, list[np.ndarray]]:
        """The server's steps 3 and 4 on one RowBatch: plan, fetch what is missing, fill, defaults, infer."""
        plan = assembly.plan(batch, self.models)
        if plan.wanted:
            assembly.fill(plan, batch, self.reader.read(plan.wanted))
        return plan, [model.run(assembly.matrix(plan, model)) for model in self.models]

    def score(self, data: Any) -> Any:
        """A pyarrow Table or RecordBatch, or a pandas DataFrame, with the score columns, prediction_id and
        defaulted added (same type; input columns untouched, row order kept)."""
        pa = tables.arrow()
        if isinstance(data, pa.Table):
            return self._score_table(data)
        if isinstance(data, pa.RecordBatch):
            scored = self._score_table(pa.Table.from_batches([data])).combine_chunks()
            batches = scored.to_batches()
            return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=scored.schema)
        if hasattr(data, "iloc") and hasattr(data, "columns"):
            return self._score_pandas(data)
        raise InvalidArgument(f"score() takes a pyarrow Table/RecordBatch or a pandas DataFrame, not {type(data)}")

    def _score_table(self, table: Any) -> Any:
        pa = tables.arrow()
        taken = [c for c in self.outputs if c in table.column_names]
        if taken:
            raise InvalidArgument(f"the input already has column(s) {taken}: rename them (sibyl adds {self.outputs})")
        chunks: list[list[Any]] = [[] for _ in self.outputs]
        for start in range(0, table.num_rows, self.bundle.chunk_rows):
            for out, array in zip(
                chunks, self._score_chunk(table.slice(start, self.bundle.chunk_rows), start), strict=True
            ):
                out.append(array)
        for name, parts, kind in zip(self.outputs, chunks, self.output_types(), strict=True):
            meta = (
                {b"sibyl.model": self.refs[self.score_columns.index(name)].encode()}
                if name in self.score_columns
                else None
            )
            table = table.append_column(pa.field(name, kind, metadata=meta), pa.chunked_array(parts, kind))
        models = json.dumps(dict(zip(self.score_columns, self.refs, strict=True)))
        return table.replace_schema_metadata({**(table.schema.metadata or {}), b"sibyl.models": models.encode()})

    def output_types(self) -> list[Any]:
        pa = tables.arrow()
        scores = [pa.float32() if m.dim == 1 else pa.list_(pa.float32()) for m in self.models]
        return [*scores, pa.string(), pa.list_(pa.string())]

    def _score_chunk(self, part: Any, start: int) -> list[Any]:
        batch = tables.to_rows(part, self.layout, self.context, start)
        plan, scores = self.score_rows(batch)
        ids = tables.prediction_ids(batch.num_rows)
        if self.bundle.log is not None:
            if self._log is None:
                self._log = self.bundle.log.open(self.bundle.target)
            self._log.write(ids, batch, plan, self.models, scores)
        return [*map(tables.score_array, scores), ids, tables.defaulted_array(self.layout.specs, plan.missing)]

    def _score_pandas(self, frame: Any) -> Any:
        pa = tables.arrow()
        taken = [c for c in self.outputs if c in frame.columns]
        if taken:
            raise InvalidArgument(f"the input already has column(s) {taken}: rename them (sibyl adds {self.outputs})")
        used = [c for c in frame.columns if c in self.inputs]
        scored = self._score_table(pa.Table.from_pandas(frame[used], preserve_index=False))
        out = frame.copy(deep=False)
        for name in self.outputs:
            out[name] = scored.column(name).to_numpy()
        out.attrs["sibyl.models"] = dict(zip(self.score_columns, self.refs, strict=True))
        return out

    def close(self) -> None:
        """Close the feature store connection and flush the log, if any. The scorer can score again after."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> BatchScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
