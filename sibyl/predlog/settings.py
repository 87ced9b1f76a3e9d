"""Prediction-log settings (SIBYL_PREDLOG__*): which sink, chosen by a short name, and its knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class PredlogSettings(BaseModel):
    sink: Literal["file", "kafka", "none"] = Field("file", description="Where prediction records go.")
    path: str = Field("predictions.jsonl", description="File sink: JSON lines, appended.")
    file_max_bytes: int = Field(
        0, ge=0, description="File sink: rotate to PATH.1 when the file reaches this size; 0 never rotates."
    )
    file_backups: int = Field(5, ge=0, description="File sink: rotated files kept (PATH.1 newest ... PATH.N).")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    kafka_client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="Kafka producer: kafka-python (default) or confluent (librdkafka: pip install 'sibyl[kafka-fast]').",
    )
    kafka_max_request_size: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest record sent; a larger one is trimmed (features dropped) or dead-lettered.",
    )
    kafka_linger_ms: int = Field(
        100,
        ge=0,
        le=1_000,
        description="Kafka producer: how long a batch waits for more records before it is sent. At 20 ms, "
        "kafka-python's I/O thread cost ~950 µs per call at 50 calls/s (a produce request per call); at 100, ~300. "
        "Records reach the topic up to this much later; shutdown flushes at once.",
    )
    kafka_ack_timeout_s: float = Field(
        3.0, gt=0, description="A record unacknowledged this long marks the broker down: spool, reconnect."
    )
    topic: str = Field("sibyl.predictions", description="Kafka topic.")
    spool_dir: str = Field("spool", description="Disk spool for records the broker could not take.")
    spool_max_bytes: int = Field(1024**3, ge=1024, description="Spool bound; past it records are dropped.")
    queue_size: int = Field(100_000, ge=1, description="Records buffered in memory before the spool.")
    log_features: bool = Field(True, description="Include feature values in records.")
    outcomes_path: str = Field(
        "outcomes.jsonl",
        description="File sink: outcomes (sibyl.v1.Outcome, proto3 JSON) appended as JSON lines; a relative path is "
        "taken beside `path` (docs/monitoring.md#outcomes-schema-and-ways-in).",
    )
    outcomes_topic: str = Field(
        "sibyl.outcomes",
        description="Kafka sink: the outcomes topic, keyed by prediction_id and partitioned as the prediction log "
        "(co-partitioned with it at the same partition count); spooled in spool_dir/outcomes.",
    )
    outcomes_max_per_call: int = Field(
        10_000, ge=1, le=1_000_000, description="Most outcomes one Report call or POST /v1/outcomes may carry."
    )

    def outcomes_file(self) -> Path:
        """Where the file sink writes outcomes: outcomes_path, or beside `path` when relative."""
        path = Path(self.outcomes_path)
        return path if path.is_absolute() else Path(self.path).parent / path
