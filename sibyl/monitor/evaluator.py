"""`sibyl monitor`'s loop: read both streams, label each answered row with its predictor's slices, join outcomes
to every model's score, make each partition's batch durable with its read positions, export quality metrics.

One `PartitionState` per partition (a SQLite file in the state dir: `partition-<n>.db`); the Kafka group hands
partitions out and back (`assigned` / `revoked`). Slices are the predictor's (`predictors/<name>.json` in the model
store, re-read every `poll_interval_s`), applied to the answering record of each call as the server applies them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sibyl.errors import SibylError
from sibyl.models.catalog import Catalog
from sibyl.models.predictor import PredictorConfig
from sibyl.monitor.records import Logged
from sibyl.monitor.sources import Batch, FileSources, KafkaSources
from sibyl.monitor.state import ANSWERING, PartitionState
from sibyl.serving.slices import Slicer

log = logging.getLogger(__name__)


def state_file(state_dir: Path, partition: int) -> Path:
    return state_dir / f"partition-{partition}.db"


class Slicers:
    """Each predictor's slices, from the model store, re-read every `refresh_s`."""

    def __init__(self, catalog: Catalog | None, refresh_s: float) -> None:
        self.catalog, self.refresh_s = catalog, refresh_s
        self._slicers: dict[str, Slicer] = {}
        self._configs: dict[str, PredictorConfig] = {}
        self._read_at = -float("inf")

    def labels(self, record: Logged) -> list[list[str]]:
        """Per row, its slice labels ("all" first), as strings."""
        slicer = self._slicer(record.predictor)
        if slicer is None:
            return [["all"]] * record.num_rows
        ids = slicer.assign(record)
        names = slicer.vocabulary.names
        return [[names[i] for i in column] for column in ids.T.tolist()]

    def _slicer(self, predictor: str) -> Slicer | None:
        now = time.monotonic()
        if self.catalog is not None and now - self._read_at >= self.refresh_s:
            self._read_at = now
            try:
                for name in self.catalog.predictor_names():
                    config = self.catalog.read_predictor(name)
                    if self._configs.get(name) != config:
                        self._configs[name] = config
                        self._slicers.setdefault(name, Slicer()).configure(config.slices)
            except SibylError as exc:
                log.warning("model store unreadable, keeping the slices known: %s", exc)
        return self._slicers.get(predictor)


class Evaluator:
    def __init__(
        self,
        state_dir: Path,
        window_s: float,
        max_state_bytes: int,
        slicers: Slicers,
        open_sources: Callable[[Evaluator], FileSources | KafkaSources],
    ) -> None:
        self.state_dir, self.window_s, self.max_state_bytes = state_dir, window_s, max_state_bytes
        self.slicers = slicers
        self.states: dict[int, PartitionState] = {}
        self.lock = threading.Lock()  # the states, between the loop and the metrics snapshot
        self.bad = 0
        self.sources = open_sources(self)

    # ---- partitions (the Kafka group calls these on its own thread, inside poll)
    def assigned(self, partitions: list[int]) -> None:
        with self.lock:
            for p in partitions:
                if p not in self.states:
                    self.states[p] = PartitionState(state_file(self.state_dir, p), self.window_s, self.max_state_bytes)

    def revoked(self, partitions: list[int]) -> None:
        with self.lock:
            for p in partitions:
                state = self.states.pop(p, None)
                if state is not None:
                    state.close()

    def position(self, partition: int, source: str) -> tuple[int, str] | None:
        state = self.states.get(partition)
        return state.offset(source) if state is not None else None

    # ---- the loop
    def step(self) -> int:
        """Read once, apply, commit; returns the records and outcomes read."""
        if isinstance(self.sources, FileSources) and 0 not in self.states:
            self.assigned([0])
        batches = self.sources.step(self.position)
        done = 0
        for batch in batches:
            done += self._apply(batch)
        return done

    def _apply(self, batch: Batch) -> int:
        with self.lock:
            state = self.states.get(batch.partition)
            if state is None:  # revoked between poll and here: the next owner reads it again
                return 0
            labelled = [(r, self.slicers.labels(r) if r.role in ANSWERING else None) for r in batch.predictions]
            state.add_predictions(labelled)
            state.add_outcomes(batch.outcomes)
            for source, (position, ident) in batch.positions.items():
                state.set_offset(source, position, ident)
            state.counters["bad_records"] = state.counters.get("bad_records", 0) + batch.bad
            state.commit()
        if isinstance(self.sources, KafkaSources):
            self.sources.committed(batch)
        return len(batch.predictions) + len(batch.outcomes)

    def expire(self) -> None:
        with self.lock:
            for state in self.states.values():
                state.expire()
                state.commit()

    def run(
        self, stop: threading.Event, expire_every_s: float = 60.0, on_idle: Callable[[], None] | None = None
    ) -> None:
        last_expire = time.monotonic()
        while not stop.is_set():
            if self.step() == 0:
                if on_idle is not None:
                    on_idle()
                stop.wait(0.2)
            if time.monotonic() - last_expire >= expire_every_s:
                self.expire()
                last_expire = time.monotonic()

    def close(self) -> None:
        self.sources.close()
        with self.lock:
            for state in self.states.values():
                state.close()
            self.states.clear()


def file_sources(predictions: Path, outcomes: Path) -> Callable[[Evaluator], FileSources]:
    return lambda _evaluator: FileSources(predictions, outcomes)


def kafka_sources(bootstrap: str, predictions_topic: str, outcomes_topic: str, group: str,
                  **consumer_options: object) -> Callable[[Evaluator], KafkaSources]:  # fmt: skip
    def open_(evaluator: Evaluator) -> KafkaSources:
        return KafkaSources(
            bootstrap, predictions_topic, outcomes_topic, group, evaluator.assigned, evaluator.revoked,
            evaluator.position, dict(consumer_options),
        )  # fmt: skip

    return open_
