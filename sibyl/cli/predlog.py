"""`sibyl predlog tail`: print prediction records (JSON lines) from the file, Kafka, or the spool."""

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
