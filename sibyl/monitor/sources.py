"""Where the monitor reads the two streams: files (the embedded default) or Kafka topics as a consumer group.

A `Batch` is what one step read for one partition: prediction log records, outcomes, and the positions to store
with the state that includes them (partition.py commits both in one SQLite transaction). Files are one partition
(0); Kafka partitions are the topics' own, and the two topics must have as many partitions each, so that a
prediction and its outcomes (both keyed by prediction_id, same partitioner) land in the same one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sibyl.errors import InvalidArgument
from sibyl.monitor.records import (
    Logged,
    OutcomeRow,
    logged_from_json,
    logged_from_proto,
    outcome_from_json,
    outcome_from_proto,
)

PREDICTIONS, OUTCOMES = "predictions", "outcomes"
MAX_BATCH = 20_000  # records per stream per step: a step's transaction stays small


@dataclass
class Batch:
    partition: int
    predictions: list[Logged] = field(default_factory=list)
    outcomes: list[OutcomeRow] = field(default_factory=list)
    positions: dict[str, tuple[int, str]] = field(default_factory=dict)  # source -> (next position, identity)
    bad: int = 0  # lines or values that could not be read (counted, skipped)


class FileTail:
    """Complete lines of a file from a byte position; a file replaced (another inode) or cut shorter starts over."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def identity(self) -> str:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ""
        return f"{st.st_dev}:{st.st_ino}"

    def read(self, position: int, ident: str, limit: int) -> tuple[list[bytes], int, str]:
        now = self.identity()
        if not now:
            return [], position, ident
        if now != ident or os.path.getsize(self.path) < position:  # rotated or truncated: the new file from 0
            position = 0
        lines: list[bytes] = []
        with self.path.open("rb") as f:
            f.seek(position)
            while len(lines) < limit:
                line = f.readline()
                if not line.endswith(b"\n"):  # a line still being written: next time
                    break
                position += len(line)
                if line.strip():
                    lines.append(line)
        return lines, position, now


class FileSources:
    """The file log and the outcomes file beside it, and each worker's own (`--workers N` writes
    `<stem>.worker-<i><suffix>` for both): partition 0, a read position per file."""

    def __init__(self, predictions: Path, outcomes: Path) -> None:
        self.bases = {PREDICTIONS: predictions, OUTCOMES: outcomes}

    def files(self, stream: str) -> list[Path]:
        base = self.bases[stream]
        return [base, *sorted(base.parent.glob(f"{base.stem}.worker-*{base.suffix}"))]

    def step(self, positions: Callable[[int, str], tuple[int, str] | None]) -> list[Batch]:
        batch = Batch(0)
        for stream in (PREDICTIONS, OUTCOMES):  # predictions first: an outcome read with its prediction joins at once
            for path in self.files(stream):
                source = stream if path == self.bases[stream] else f"{stream}:{path.name}"
                position, ident = positions(0, source) or (0, "")
                lines, position, ident = FileTail(path).read(position, ident, MAX_BATCH)
                for line in lines:
                    try:
                        if stream == PREDICTIONS:
                            batch.predictions.append(logged_from_json(line))
                        else:
                            batch.outcomes.append(outcome_from_json(line))
                    except (ValueError, KeyError, TypeError):
                        batch.bad += 1
                if ident:
                    batch.positions[source] = (position, ident)
        return [batch]

    def close(self) -> None:
        pass


class KafkaSources:
    """Both topics in one consumer group; partition p of each goes to the same instance (kafka-python's range
    assignor), whose state for p lives in the state dir. Offsets come from the state, not from the group."""

    def __init__(
        self,
        bootstrap: str,
        predictions_topic: str,
        outcomes_topic: str,
        group: str,
        on_assigned: Callable[[list[int]], None],
        on_revoked: Callable[[list[int]], None],
        positions: Callable[[int, str], tuple[int, str] | None],
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

        self._tp = TopicPartition
        self.topics = {predictions_topic: PREDICTIONS, outcomes_topic: OUTCOMES}
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH,
            **(consumer_options or {}),
        )
        sources = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python's base is untyped
            def on_partitions_revoked(self, revoked: Any) -> None:
                on_revoked(sorted({tp.partition for tp in revoked}))

            def on_partitions_assigned(self, assigned: Any) -> None:
                partitions = sorted({tp.partition for tp in assigned})
                on_assigned(partitions)
                for tp in assigned:  # resume where the durable state ends
                    stored = positions(tp.partition, sources.topics[tp.topic])
                    if stored is None:
                        sources.consumer.seek_to_beginning(tp)
                    else:
                        sources.consumer.seek(tp, stored[0])

        counts = {t: len(self.consumer.partitions_for_topic(t) or ()) for t in self.topics}
        if len(set(counts.values())) != 1:
            self.consumer.close()
            raise InvalidArgument(
                f"the prediction log and outcome topics need the same number of partitions to be joined: {counts}"
            )
        self.consumer.subscribe(list(self.topics), listener=Listener())

    def step(self, positions: Callable[[int, str], tuple[int, str] | None]) -> list[Batch]:
        polled = self.consumer.poll(timeout_ms=200)
        batches: dict[int, Batch] = {}
        for tp, messages in polled.items():
            stream = self.topics[tp.topic]
            batch = batches.setdefault(tp.partition, Batch(tp.partition))
            for m in messages:
                try:
                    if stream == PREDICTIONS:
                        batch.predictions.append(logged_from_proto(m.value))
                    else:
                        batch.outcomes.append(outcome_from_proto(m.value))
                except Exception:  # a foreign or damaged value: counted, skipped
                    batch.bad += 1
            if messages:
                batch.positions[stream] = (messages[-1].offset + 1, "")
        return list(batches.values())

    def committed(self, batch: Batch) -> None:
        """After the state with this batch is durable: the group's offsets, for tools that read them."""
        from kafka.structs import OffsetAndMetadata

        offsets = {}
        for topic, stream in self.topics.items():
            if stream in batch.positions:
                offsets[self._tp(topic, batch.partition)] = OffsetAndMetadata(batch.positions[stream][0], "", -1)
        if offsets:
            self.consumer.commit(offsets)

    def close(self) -> None:
        self.consumer.close()
