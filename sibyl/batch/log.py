"""Optional prediction logs for batch scoring (off by default): Parquet files, or the server's PredictionLog
records through a predlog sink (Kafka). A log is a small picklable config; each process opens its own writer.

Prediction ids: row r of a scored chunk has id P + r in 8 hex digits, P being 24 random hex digits per chunk.
A PredictionLog record covers up to `rows_per_record` consecutive rows; its prediction_id is its first row's.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sibyl.models.runtime import OnnxModel
from sibyl.predlog.settings import PredlogSettings
from sibyl.serving import assembly
from sibyl.serving.decode import RowBatch
from sibyl.serving.records import build_record
from sibyl.v1.predict_pb2 import Role


class LogWriter(Protocol):
    def write(
        self, ids: Any, batch: RowBatch, plan: assembly.Plan, models: list[OnnxModel], scores: list[np.ndarray]
    ) -> None: ...

    def close(self) -> None: ...


class BatchLog(Protocol):
    def open(self, target: str) -> LogWriter: ...


def _defaulted(plan: assembly.Plan, rows: slice) -> dict[str, np.ndarray]:
    """serving.assembly.defaulted for a slice of rows (row numbers relative to the slice)."""
    part = assembly.Plan(plan.layout, plan.models, plan.values[rows], plan.missing[rows])
    return assembly.defaulted(part)


@dataclass(frozen=True)
class ParquetLog:
    """One Parquet file per chunk and model in `path`/<model>@<version>/ (a dataset per model): prediction_id,
    the model's input columns as scored (after the store and the defaults), its score and the defaulted features."""

    path: str

    def open(self, target: str) -> LogWriter:
        return _ParquetWriter(Path(self.path))


class _ParquetWriter:
    def __init__(self, root: Path) -> None:
        import pyarrow.parquet as pq

        self.root, self.pq = root, pq

    def write(
        self, ids: Any, batch: RowBatch, plan: assembly.Plan, models: list[OnnxModel], scores: list[np.ndarray]
    ) -> None:
        import pyarrow as pa

        from sibyl.batch.table import defaulted_array, score_array

        defaulted = defaulted_array(plan.layout.specs, plan.missing)
        for model, score in zip(models, scores, strict=True):
            matrix = assembly.matrix(plan, model)
            columns = {"prediction_id": ids} | {c: matrix[:, j] for j, c in enumerate(model.columns)}
            table = pa.table(columns | {"score": score_array(score), "defaulted": defaulted})
            folder = self.root / model.manifest.ref
            folder.mkdir(parents=True, exist_ok=True)
            self.pq.write_table(table, folder / f"part-{ids[0].as_py()[:24] if len(ids) else 'empty'}.parquet")

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class SinkLog:
    """PredictionLog records as the server writes them (serving.records.build_record), one per model per
    `rows_per_record` rows, to the sink `settings` names (e.g. sink="kafka": its sender thread and disk spool
    start with the first write and are flushed by BatchScorer.close)."""

    settings: PredlogSettings
    rows_per_record: int = 1000

    def open(self, target: str) -> LogWriter:
        return _SinkWriter(self, target)


class _SinkWriter:
    def __init__(self, config: SinkLog, target: str) -> None:
        from prometheus_client import CollectorRegistry

        from sibyl.observability.metrics import Metrics
        from sibyl.predlog import build_sink

        self.config, self.target = config, target
        self.sink = build_sink(config.settings, Metrics(CollectorRegistry()))
        self.sink.start()
        self.host = f"{socket.gethostname()}:{os.getpid()}"

    def write(
        self, ids: Any, batch: RowBatch, plan: assembly.Plan, models: list[OnnxModel], scores: list[np.ndarray]
    ) -> None:
        step, sent_at = self.config.rows_per_record, time.time_ns()
        matrices = [assembly.matrix(plan, m) for m in models] if self.config.settings.log_features else None
        per_row = {e: c.rows() for e, c in batch.coded_entities.items()} | batch.row_entities
        for start in range(0, batch.num_rows, step):
            rows = slice(start, start + step)
            part = RowBatch(
                len(batch.values[rows]), batch.names, batch.values[rows], batch.shared_entities,
                {e: ids_[rows] for e, ids_ in per_row.items()},
            )  # fmt: skip
            defaulted = _defaulted(plan, rows)
            for i, (model, score) in enumerate(zip(models, scores, strict=True)):
                record = build_record(
                    prediction_id=ids[start].as_py(),
                    request_id=self.target,
                    predictor=self.target,
                    model=model.name,
                    version=model.version,
                    role=Role.ROLE_PRIMARY if i == 0 else Role.ROLE_EXTRA,
                    arm="",
                    sent_at_ns=sent_at,
                    batch=part,
                    columns=model.columns,
                    matrix=None if matrices is None else matrices[i][rows],
                    defaulted=defaulted,
                    scores=score[rows],
                    latency_ms=0.0,
                    host=self.host,
                )
                self.sink.submit(record)

    def close(self) -> None:
        self.sink.close()
