"""`sibyl predlog tail`: print prediction records (JSON lines) from the file, Kafka, or the spool. `sibyl predlog
archive`: the prediction log or the outcomes as Parquet (sibyl.batch.archive)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from sibyl.config import Settings
from sibyl.errors import InvalidArgument
from sibyl.predlog import tail
from sibyl.v1.predlog_pb2 import PredictionLog


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("predlog", help="read the prediction log")
    sub = group.add_subparsers(dest="predlog_command", required=True)
    p = sub.add_parser(
        "tail",
        help="print the last prediction records as JSON lines",
        description="Source: --file, --kafka or --spool; default: the configured sink (predlog.sink/path/topic).",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--file", metavar="PATH", help="JSONL prediction log written by the file sink")
    source.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka bootstrap servers, e.g. 127.0.0.1:9092")
    source.add_argument("--spool", metavar="DIR", help="records waiting in a Kafka sink's disk spool")
    p.add_argument("--topic", help="Kafka topic (default: predlog.topic)")
    p.add_argument("-n", "--lines", type=int, default=10, metavar="N", help="how many (default 10; 0 = all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    p.add_argument("--for", dest="max_seconds", type=float, metavar="SECONDS", help="stop following after this")
    p.add_argument("--prediction-id", metavar="ID", help="only records of this prediction")
    p.set_defaults(handler=cmd_tail)
    a = sub.add_parser(
        "archive",
        help="write the prediction log (or the outcomes) as Parquet for batch jobs",
        description="Appends what is new since the last run to DIR/predictions/predictor=<name>/date=<YYYY-MM-DD>/ "
        "(--outcomes: DIR/outcomes/date=<YYYY-MM-DD>/); layout in docs/monitoring.md#batch-archive-and-spark. "
        "Source: --file or --kafka; default: the configured sink. Needs pip install 'sibyl[parquet]'.",
    )
    a.add_argument("dir", metavar="DIR", help="archive root (a local folder)")
    a.add_argument("--outcomes", action="store_true", help="archive the outcomes instead of the prediction log")
    archived = a.add_mutually_exclusive_group()
    archived.add_argument("--file", metavar="PATH", help="file log (or outcomes file), with its rotated backups")
    archived.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka bootstrap servers, e.g. 127.0.0.1:9092")
    a.add_argument("--topic", help="Kafka topic (default: predlog.topic, or predlog.outcomes_topic)")
    a.add_argument("--chunk", type=int, default=100_000, metavar="N", help="records per part file (default 100000)")
    a.set_defaults(handler=cmd_archive)


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    if args.lines < 0:
        raise InvalidArgument(f"-n must be 0 or more, got {args.lines}")
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise InvalidArgument(f"--for must be positive, got {args.max_seconds}")
    last = args.lines or None
    cfg = settings.predlog
    records: Iterator[PredictionLog | None]  # None: an idle poll while following
    if args.spool:
        if args.follow:
            raise InvalidArgument("--follow does not apply to --spool (a spool only drains)")
        records = tail.read_spool(Path(args.spool))
    elif args.kafka or (not args.file and cfg.sink == "kafka"):
        bootstrap, topic = args.kafka or cfg.kafka_bootstrap, args.topic or cfg.topic
        # a prediction id may be anywhere in the topic: scan it all, keep the last N matches
        per_partition = None if args.prediction_id else last
        records = tail.read_kafka(bootstrap, topic, per_partition, args.follow, args.max_seconds)
    else:
        records = tail.read_file(Path(args.file or cfg.path), args.follow, args.max_seconds)
    tail.print_records(records, sys.stdout, last, args.prediction_id)
    return 0


def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    from sibyl.batch.archive import OUTCOMES, PREDICTIONS, Written, pyarrow_modules
    from sibyl.batch.archive_sources import archive_file, archive_kafka

    if args.chunk < 1:
        raise InvalidArgument(f"--chunk must be 1 or more, got {args.chunk}")
    pyarrow_modules()  # the install hint before anything is read
    cfg, root = settings.predlog, Path(args.dir)
    stream = OUTCOMES if args.outcomes else PREDICTIONS
    written = Written()
    if args.kafka or (not args.file and cfg.sink == "kafka"):
        topic = args.topic or (cfg.outcomes_topic if args.outcomes else cfg.topic)
        archive_kafka(root, stream, args.kafka or cfg.kafka_bootstrap, topic, written, args.chunk)
    else:
        path = Path(args.file) if args.file else cfg.outcomes_file() if args.outcomes else Path(cfg.path)
        archive_file(root, stream, path, written, args.chunk)
    print(f"sibyl: archived {written.records} {stream} records as {written.rows} rows in {written.files} files "
          f"under {root / stream}" + (f"; {written.bad} unreadable skipped" if written.bad else ""))  # fmt: skip
    return 0
