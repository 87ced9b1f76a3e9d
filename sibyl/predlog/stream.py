"""What a sink carries: the records' name in logs, how one is encoded, trimmed and quarantined, and the metrics
that count them. The file and Kafka sinks, the spool and the producers serve two streams through it: the
prediction log (PREDICTIONS, every sink's default) and outcomes (predlog/outcome_sink.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from sibyl.observability.metrics import Metrics
from sibyl.predlog.jsonl import to_json_bytes
from sibyl.predlog.poison import dead_letter_json, trimmed


class Record(Protocol):
    """A record a sink takes: a generated message keyed by its prediction id (PredictionLog, Outcome)."""

    @property
    def prediction_id(self) -> str: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # protobuf's name


@dataclass(frozen=True)
class SinkCounters:
    records: Counter  # by outcome: written, sent, spooled, replayed, trimmed, dead_letter, dropped
    dropped: Counter  # by reason (predlog/losses.py)
    restarts: Counter  # Kafka sender thread restarts
    queue_depth: Gauge
    spool_bytes: Gauge


@dataclass(frozen=True)
class Stream:
    noun: str  # what log lines call it: "prediction log"
    thread: str  # threads' name prefix: "predlog"
    counters: Callable[[Metrics], SinkCounters]
    json_line: Callable[[Any], bytes]  # one record as a JSON line, "\n" included (file sink)
    trim: Callable[[bytes], bytes | None]  # a value the broker refused, made smaller; None: nothing to drop
    dead_letter: Callable[[bytes], str]  # a refused value as JSON, for the dead-letter file


def prediction_counters(metrics: Metrics) -> SinkCounters:
    m = metrics
    return SinkCounters(
        m.predlog_records, m.predlog_dropped, m.predlog_sender_restarts, m.predlog_queue_depth, m.predlog_spool_bytes
    )


PREDICTIONS = Stream(
    "prediction log",
    "predlog",
    prediction_counters,
    functools.partial(to_json_bytes, newline=True),
    trimmed,
    dead_letter_json,
)
