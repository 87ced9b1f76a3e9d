"""Every transport-free part of sibyl, built from Settings: what the gRPC server and the embedded Predictor share."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from sibyl.config import Settings
from sibyl.features import build_fetcher
from sibyl.features.base import FeatureFetcher
from sibyl.models.catalog import Catalog
from sibyl.models.registry import ModelRegistry
from sibyl.models.store import open_store
from sibyl.observability import tracing
from sibyl.observability.metrics import Metrics
from sibyl.predlog import build_sink
from sibyl.predlog.base import PredictionSink
from sibyl.serving.after_response import AfterResponse
from sibyl.serving.decode import Limits
from sibyl.serving.service import PredictionService, ServiceOptions


def inference_threads(settings: Settings) -> int:
    """onnxruntime intra-op threads for big batches (models.runtime.MANY_ROWS rows or more): the setting, or the
    cores shared out between worker processes. Smaller batches always run on one thread (docs/design.md)."""
    if settings.server.inference_threads:
        return settings.server.inference_threads
    workers = settings.server.workers or os.cpu_count() or 1
    return max(1, (os.cpu_count() or 1) // workers)


@dataclass
class App:
    registry: ModelRegistry
    fetcher: FeatureFetcher
    sink: PredictionSink
    after: AfterResponse  # the threads that log, flush metrics and run shadows after each response
    service: PredictionService

    @classmethod
    async def build(cls, settings: Settings, metrics: Metrics) -> App:
        """Loads every predictor's models before returning; starts the log sink and the after-response threads."""
        s = settings
        tracer = tracing.build(
            s.tracing
        )  # None unless tracing.enabled (free when off); first: a missing extra fails now
        ms = s.model_store
        store = open_store(ms.url, ms.s3_endpoint_url, ms.s3_region, ms.s3_read_timeout_s)
        registry = ModelRegistry(
            Catalog(store),
            metrics,
            poll_interval_s=s.model_store.poll_interval_s,
            intra_op_threads=inference_threads(s),
        )
        await registry.start()
        fetcher = build_fetcher(s.features, metrics)
        sink = build_sink(s.predlog, metrics)
        sink.start()
        after = AfterResponse(
            metrics,
            s.shadows.queue_size,
            s.shadows.concurrency,
            is_busy=lambda: service.busy(s.shadows.max_in_flight_fraction),
            inline_rows=s.server.followup_inline_rows,
        )
        service = PredictionService(
            registry,
            fetcher,
            sink,
            after,
            metrics,
            ServiceOptions(
                limits=Limits(
                    max_rows=s.server.max_rows,
                    max_models=s.server.max_models,
                    max_name_length=s.server.max_name_length,
                    max_columns=s.server.max_columns,
                    max_elements=s.server.max_elements,
                ),
                offload_rows=s.server.offload_rows,
                decode_offload_bytes=s.server.decode_offload_bytes,
                decode_process_bytes=s.server.decode_process_bytes,
                decode_processes=s.server.decode_processes,
                max_in_flight=s.server.max_in_flight,
                log_features=s.predlog.log_features,
                drift_sample=s.metrics.drift_sample,
                verdicts=s.metrics.verdicts,
            ),
        )
        service.tracing = tracer
        after.start()
        return cls(registry, fetcher, sink, after, service)

    async def close(self, timeout_s: float) -> None:
        """Finish queued log records and shadows, stop polling, flush the prediction log, close the feature store."""
        self.service.decode_pool.close()  # the drain waited for the calls; a decode under way ends unread
        await self.after.stop(timeout_s=min(timeout_s, 5.0))
        if self.service.verdicts is not None:
            self.service.verdicts.close()  # the last verdicts into the metrics, the flusher thread ended
        await self.registry.stop()
        await asyncio.to_thread(self.sink.close, max(timeout_s, 5.0))
        await self.fetcher.close()
        if self.service.tracing is not None:
            await asyncio.to_thread(self.service.tracing.close)  # flushes the spans not yet exported
