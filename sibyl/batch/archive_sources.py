"""Where `sibyl predlog archive` reads, and how far it got: the file log (with its rotated backups) or a Kafka topic,
for the prediction log or the outcomes. Each run goes on from the position the last one recorded in
`DIR/<stream>/_archived.json` (written after the chunk's files), so runs add only what is new.

A chunk is up to `chunk` records from one position of one source (a file, by its inode; a topic partition); its
files are named after that position, `part-<source>-<start>`, so a run cut short between a chunk's files and the
record of its position writes the same files again, a superset of the same records, on the next run: no record is
archived twice or lost. The rotated files of a file log (PATH.1 newest ... PATH.N) are read oldest first; a
backup already rotated away before it was archived is gone (logged). Each worker's file (`--workers N`) is a
source of its own.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sibyl.batch.archive import (
    PREDICTIONS,
    Written,
    outcome_from_json,
    outcome_from_proto,
    write_chunk,
)
from sibyl.errors import NotFound, Unavailable
from sibyl.predlog.read import record_from_json, record_from_proto
from sibyl.predlog.tail import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

CHECKPOINT = "_archived.json"  # a leading underscore: Spark and pyarrow skip it when they read the folder
CHUNK = 100_000  # records per chunk: a chunk's rows are held in memory until its files are written
STALL_S = 30.0  # a Kafka partition that gives nothing this long before its end offset: Unavailable


class Checkpoints:
    """source -> its position, in DIR/<stream>/_archived.json (replaced whole: a crash leaves the old or the new)."""

    def __init__(self, root: Path, stream: str) -> None:
        self.path = root / stream / CHECKPOINT
        self.positions: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, source: str) -> dict[str, Any] | None:
        return self.positions.get(source)

    def set(self, source: str, position: dict[str, Any]) -> None:
        self.positions[source] = position
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(CHECKPOINT + ".tmp")
        temporary.write_text(json.dumps(self.positions, indent=1, sort_keys=True))
        os.replace(temporary, self.path)


def _identity(f: IO[bytes]) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}_{st.st_ino}"


def _chain(path: Path, stored: dict[str, Any] | None) -> list[tuple[Path, int]]:
    """The files to read, oldest first, each with its start position: from the stored file on (or everything)."""
    backups = sorted((p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
                     key=lambda p: -int(p.suffix[1:]))  # fmt: skip
    files = [*backups, path] if path.exists() else backups
    if stored is not None:
        for i, file in enumerate(files):
            with file.open("rb") as f:
                same = _identity(f) == stored["ident"]
            if same:
                start = int(stored["position"]) if file.stat().st_size >= int(stored["position"]) else 0
                return [(file, start)] + [(f, 0) for f in files[i + 1 :]]
        log.warning("%s: the file archived last (%s) is no longer among the rotated files; some records may have "
                    "been rotated away before they were archived", path, stored["ident"])  # fmt: skip
    return [(f, 0) for f in files]


def log_files(path: Path) -> list[Path]:
    """The file log and each worker's own (`sibyl serve --workers N` writes `<stem>.worker-<i><suffix>`), those
    that exist or have rotated backups."""
    workers = sorted(path.parent.glob(f"{path.stem}.worker-*{path.suffix}"))
    return [p for p in (path, *workers) if p.exists() or any(path.parent.glob(p.name + ".*"))]


def archive_file(root: Path, stream: str, path: Path, written: Written, chunk: int = CHUNK) -> None:
    """Every complete line not archived yet of the file log (or outcomes file), its workers' files, and their
    rotated backups; each file a source of its own in the checkpoints."""
    files = log_files(path)
    if not files:
        raise NotFound(f"{path} does not exist; pass --file or set SIBYL_PREDLOG__PATH")
    checkpoints = Checkpoints(root, stream)
    for file in files:
        _archive_one(root, stream, file, checkpoints, written, chunk)


def _archive_one(root: Path, stream: str, path: Path, checkpoints: Checkpoints, written: Written, chunk: int) -> None:
    source = f"file:{path.resolve()}"
    parse: Callable[[bytes], Any] = record_from_json if stream == PREDICTIONS else outcome_from_json
    for file, start in _chain(path, checkpoints.get(source)):
        with file.open("rb") as f:  # held open: a rotation while reading renames it, the handle reads on
            ident = _identity(f)
            f.seek(start)
            position = start
            while True:
                items: list[Any] = []
                end = position
                while len(items) < chunk:
                    line = f.readline()
                    if not line.endswith(b"\n"):  # end of file, or a line still being written: the next run
                        break
                    end += len(line)
                    if line.strip():
                        try:
                            items.append(parse(line))
                        except (ValueError, KeyError, TypeError):
                            written.bad += 1
                if end == position:
                    break
                write_chunk(root, stream, f"{ident}-{position}", items, written)
                position = end
                checkpoints.set(source, {"ident": ident, "position": position, "file": str(file)})
                f.seek(position)


def archive_kafka(root: Path, stream: str, bootstrap: str, topic: str, written: Written, chunk: int = CHUNK) -> None:
    """Every partition of the topic, from where the last run stopped until a fetch past the end offsets seen at the
    start comes back empty."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    parse: Callable[[bytes], Any] = record_from_proto if stream == PREDICTIONS else outcome_from_proto
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, bootstrap_timeout_ms=5_000,
                                 receive_message_max_bytes=MAX_FRAME_BYTES)  # fmt: skip
    except KafkaError as exc:
        raise Unavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    checkpoints = Checkpoints(root, stream)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise NotFound(f"topic {topic!r} not found on {bootstrap}; pass --topic")
        for partition in sorted(partitions):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            begin, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
            source = f"kafka:{topic}/{partition}"
            stored = checkpoints.get(source)
            position = max(begin, int(stored["offset"])) if stored else begin
            if stored and int(stored["offset"]) < begin:
                log.warning("%s: offsets %d..%d were deleted by retention before they were archived",
                            source, stored["offset"], begin - 1)  # fmt: skip
            caught_up = False
            while not caught_up:
                consumer.seek(tp, position)
                items: list[Any] = []
                deadline = time.monotonic() + STALL_S
                next_offset = position
                while len(items) < chunk:
                    polled = consumer.poll(timeout_ms=500, max_records=min(chunk - len(items), 10_000))
                    messages = polled.get(tp, [])
                    for message in messages[: chunk - len(items)]:
                        next_offset = message.offset + 1
                        try:
                            items.append(parse(message.value))
                        except Exception:  # a foreign or damaged value: counted, skipped
                            written.bad += 1
                    if messages:
                        deadline = time.monotonic() + STALL_S
                        continue
                    # Nothing fetched: done once past the end offset seen at the start (some brokers report it
                    # low: an empty fetch past it is the end); offsets skipped by compaction or markers count.
                    next_offset = max(next_offset, consumer.position(tp))
                    if next_offset >= end:
                        caught_up = True
                        break
                    if time.monotonic() > deadline:
                        raise Unavailable(f"{source}: no records from offset {next_offset} for {STALL_S:.0f} s")
                if next_offset > position:
                    write_chunk(root, stream, f"{topic}_{partition}-{position}", items, written)
                    position = next_offset
                    checkpoints.set(source, {"offset": position})
    finally:
        consumer.close()
