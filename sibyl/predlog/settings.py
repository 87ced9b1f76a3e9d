"""Prediction-log settings (SIBYL_PREDLOG__*): which sink, chosen by a short name, and its knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PredlogSettings(BaseModel):
    sink: Literal["file", "kafka", "none"] = Field("file", description="Where prediction records go.")
    path: str = Field("predictions.jsonl", description="File sink: JSON lines, appended.")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    topic: str = Field("sibyl.predictions", description="Kafka topic.")
    spool_dir: str = Field("spool", description="Disk spool for records the broker could not take.")
    spool_max_bytes: int = Field(1024**3, ge=1024, description="Spool bound; past it records are dropped.")
    queue_size: int = Field(100_000, ge=1, description="Records buffered in memory before the spool.")
    log_features: bool = Field(True, description="Include feature values in records.")
