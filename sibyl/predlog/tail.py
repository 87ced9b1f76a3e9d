"""Read prediction records back for on-call debugging: from the JSONL file, from Kafka, or from the spool.

Each reader yields PredictionLog records oldest first; `print_records` keeps the last N that match and,
with follow, keeps printing new ones until `max_seconds` (or Ctrl-C).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from google.protobuf import json_format

from sibyl.errors import NotFound, Unavailable
from sibyl.predlog.jsonl import from_json_line, to_json_line
from sibyl.predlog.spool import MAGIC, SUFFIX, scan_frames
from sibyl.v1.predlog_pb2 import PredictionLog

POLL_S = 0.2


def read_file(path: Path, follow: bool, max_seconds: float | None) -> Iterator[PredictionLog | None]:
    """Records of a JSONL prediction log; with follow, then None on each idle poll (lets callers print)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise NotFound(f"prediction log file {path} does not exist; pass --file or set SIBYL_PREDLOG__PATH") from None
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    with f:
        for number in range(1, 1 << 62):  # bounded by the file (and the deadline when following)
            line = f.readline()
            if not line.endswith(b"\n"):  # end of file or a line still being written
                if not follow or (deadline is not None and time.monotonic() >= deadline):
                    return
                f.seek(-len(line), 1)
                yield None
                time.sleep(POLL_S)
                continue
            try:
                yield from_json_line(line.decode())
            except (json_format.ParseError, UnicodeDecodeError) as exc:  # one bad line must not hide the rest
                print(f"sibyl: warning: {path}:{number} skipped, not a PredictionLog JSON line: {exc}", file=sys.stderr)


def read_spool(directory: Path) -> Iterator[PredictionLog]:
    """Records waiting in a spool, oldest first, read-only (a torn tail is just not shown)."""
    from sibyl.predlog.kafka import split_payload

    if not directory.is_dir():
        raise NotFound(f"spool directory {directory} does not exist; pass --spool or set SIBYL_PREDLOG__SPOOL_DIR")
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            continue
        frames, _ = scan_frames(data)
        for _, payload in frames:
            yield PredictionLog.FromString(split_payload(payload)[1])


# kafka-python 3.0.0 refuses a response frame over 1 MB while it fetches up to 50 MB: lz4 batches of large records
# failed to read there. Later releases default to this. Every kafka-python reader of the log passes it.
MAX_FRAME_BYTES = 100_000_000


def read_kafka(
    bootstrap: str, topic: str, last: int | None, follow: bool, max_seconds: float | None
) -> Iterator[PredictionLog | None]:
    """Records of every partition of `topic` (the last `last` per partition, or all); None on idle polls."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            bootstrap_timeout_ms=5_000,
            receive_message_max_bytes=MAX_FRAME_BYTES,
        )
    except KafkaError as exc:
        raise Unavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise NotFound(f"topic {topic!r} not found on {bootstrap}; pass --topic or set SIBYL_PREDLOG__TOPIC")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, begin[tp] if last is None else max(begin[tp], end[tp] - last))
        deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        for _ in range(1 << 62):  # ends at the caught-up point, or the deadline when following
            batch = consumer.poll(timeout_ms=int(POLL_S * 1000))
            for messages in batch.values():
                for m in messages:
                    yield PredictionLog.FromString(m.value)
            caught_up = all(consumer.position(tp) >= end[tp] for tp in tps)
            if not follow and caught_up:
                return
            if follow:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                if not batch:
                    yield None
    finally:
        consumer.close()


def print_records(
    records: Iterator[PredictionLog | None], out: IO[str], last: int | None, prediction_id: str | None
) -> int:
    """Print matching records as JSON lines: the last `last` of the backlog, then (if following) each new one."""
    backlog: deque[PredictionLog] = deque(maxlen=last)
    printed = 0
    caught_up = False
    for record in records:
        if record is None:  # an idle poll: the backlog is complete
            if not caught_up:
                printed += _flush(backlog, out)
                caught_up = True
            continue
        if prediction_id is not None and record.prediction_id != prediction_id:
            continue
        if caught_up:
            out.write(to_json_line(record) + "\n")
            out.flush()
            printed += 1
        else:
            backlog.append(record)
    return printed + _flush(backlog, out)


def _flush(backlog: deque[PredictionLog], out: IO[str]) -> int:
    n = len(backlog)
    for record in backlog:
        out.write(to_json_line(record) + "\n")
    backlog.clear()
    out.flush()
    return n
