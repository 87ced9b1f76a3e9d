"""Choose a sink from settings: file (default), kafka, or none; for the prediction log, or another stream (outcomes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sibyl.observability.metrics import Metrics
from sibyl.predlog.base import PredictionSink
from sibyl.predlog.settings import PredlogSettings
from sibyl.predlog.stream import PREDICTIONS, Stream
from sibyl.v1.predlog_pb2 import PredictionLog

if TYPE_CHECKING:  # imported when chosen: kafka-python is only loaded for the Kafka sink
    from sibyl.predlog.file import FileSink
    from sibyl.predlog.kafka import KafkaSink


class NullSink:
    """Accepts and forgets records (sink = none), counting nothing."""

    def start(self) -> None:
        pass

    def submit(self, record: PredictionLog) -> None:
        pass

    def close(self, timeout_s: float = 10.0) -> None:
        pass


def build_sink(settings: PredlogSettings, metrics: Metrics) -> PredictionSink:
    if settings.sink == "none":
        return NullSink()
    return stream_sink(settings, metrics, PREDICTIONS, settings.topic, Path(settings.spool_dir), Path(settings.path))


def stream_sink(
    settings: PredlogSettings, metrics: Metrics, stream: Stream, topic: str, spool_dir: Path, path: Path
) -> FileSink | KafkaSink:
    """The file or Kafka sink (settings.sink, not none) for a stream: the prediction log's, or outcomes'
    (predlog/outcome_sink.py), each with its own file, topic and spool."""
    if settings.sink == "kafka":
        from sibyl.predlog.kafka import KafkaSink
        from sibyl.predlog.spool import Spool

        return KafkaSink(
            settings.kafka_bootstrap,
            topic,
            Spool(spool_dir, settings.spool_max_bytes),
            metrics,
            client=settings.kafka_client,
            queue_size=settings.queue_size,
            linger_ms=settings.kafka_linger_ms,
            max_request_size=settings.kafka_max_request_size,
            ack_timeout_s=settings.kafka_ack_timeout_s,
            stream=stream,
        )
    from sibyl.predlog.file import FileSink

    return FileSink(
        path,
        metrics,
        queue_size=settings.queue_size,
        max_bytes=settings.file_max_bytes,
        backups=settings.file_backups,
        stream=stream,
    )
