"""Where reported outcomes go: the prediction log's own sinks, carrying sibyl.v1.Outcome (docs/monitoring.md).

predlog.sink = file: JSON lines in predlog.outcomes_file() (beside the prediction log), written, rotated and
reopened by a FileSink as the prediction log is. predlog.sink = kafka: the topic predlog.outcomes_topic, keyed by
prediction_id and partitioned by the same producers (crc32(key) % partitions), so an outcome lands on the
partition of its prediction's records when both topics have the same partition count; a KafkaSink with its own
spool (spool_dir/outcomes) keeps what the broker cannot take, as for the prediction log. predlog.sink = none: no
outcome log; api/outcomes.py refuses reports (a caller must not believe outcomes were kept).

One line of the file: {"prediction_id": "...", "row": 0, "value": 1.0, "observed_at_unix_nanos": "...",
"weight": 1.0}: proto3 JSON with the .proto's field names (int64 as a string), every field written but weight,
which is there only when it was given. json_format.Parse reads it back as an Outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from google.protobuf import json_format

from sibyl.observability.metrics import Metrics
from sibyl.predlog.factory import stream_sink
from sibyl.predlog.settings import PredlogSettings
from sibyl.predlog.stream import Record, SinkCounters, Stream
from sibyl.v1.outcome_pb2 import Outcome

OUTCOME_SPOOL = "outcomes"  # the outcome spool's folder inside predlog.spool_dir


class OutcomeSink(Protocol):
    def start(self) -> None: ...

    def submit_all(self, records: Sequence[Record]) -> bool:
        """All queued, or none (full or closed); never blocks."""

    def close(self, timeout_s: float = 10.0) -> None: ...


def outcome_json_line(outcome: Outcome) -> bytes:
    data: dict[str, Any] = {
        "prediction_id": outcome.prediction_id,
        "row": outcome.row,
        "value": outcome.value,
        "observed_at_unix_nanos": str(outcome.observed_at_unix_nanos),
    }
    if outcome.HasField("weight"):
        data["weight"] = outcome.weight
    return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)


def from_json_line(line: str | bytes) -> Outcome:
    """Raises json_format.ParseError (a ValueError) on a line that is not an Outcome."""
    return json_format.Parse(line, Outcome())


def _dead_letter(value: bytes) -> str:
    return outcome_json_line(Outcome.FromString(value)).decode().rstrip("\n")


def _nothing_to_trim(value: bytes) -> bytes | None:
    return None  # an outcome is ~50 bytes: a broker that refuses one refuses it whole (dead-lettered)


def outcome_counters(metrics: Metrics) -> SinkCounters:
    m = metrics
    return SinkCounters(
        m.outcomes, m.outcomes_dropped, m.outcomes_sender_restarts, m.outcomes_queue_depth, m.outcomes_spool_bytes
    )


OUTCOMES = Stream("outcome log", "outcomes", outcome_counters, outcome_json_line, _nothing_to_trim, _dead_letter)


def build_outcome_sink(settings: PredlogSettings, metrics: Metrics) -> OutcomeSink | None:
    """The outcome log for predlog.sink; None when it is none. Not started."""
    if settings.sink == "none":
        return None
    spool = Path(settings.spool_dir) / OUTCOME_SPOOL
    return stream_sink(settings, metrics, OUTCOMES, settings.outcomes_topic, spool, settings.outcomes_file())
