"""Choose the prediction sink from settings: file (default), kafka, or none."""

from __future__ import annotations

from pathlib import Path

from sibyl.observability.metrics import Metrics
from sibyl.predlog.base import PredictionSink
from sibyl.predlog.settings import PredlogSettings
from sibyl.v1.predlog_pb2 import PredictionLog


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
    if settings.sink == "kafka":
        from sibyl.predlog.kafka import KafkaSink
        from sibyl.predlog.spool import Spool

        spool = Spool(Path(settings.spool_dir), settings.spool_max_bytes)
        return KafkaSink(
            settings.kafka_bootstrap,
            settings.topic,
            spool,
            metrics,
            client=settings.kafka_client,
            queue_size=settings.queue_size,
            linger_ms=settings.kafka_linger_ms,
            max_request_size=settings.kafka_max_request_size,
            ack_timeout_s=settings.kafka_ack_timeout_s,
        )
    from sibyl.predlog.file import FileSink

    return FileSink(
        settings.path,
        metrics,
        queue_size=settings.queue_size,
        max_bytes=settings.file_max_bytes,
        backups=settings.file_backups,
    )
