"""gRPC adapter for sibyl.v1.PredictionService: converts nothing it need not, delegates to the service."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import grpc

from sibyl.api.status import to_status
from sibyl.observability.metrics import Metrics
from sibyl.service import PredictionService
from sibyl.v1 import predict_pb2_grpc
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse, PredictStreamResponse, Status

WORKER_METADATA = (("sibyl-worker", str(os.getpid())),)  # which process answered: useful behind SO_REUSEPORT
STREAM_WINDOW = 32  # requests of one stream scored at once; the client is slowed by flow control beyond it


class PredictionServicer(predict_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictionService, metrics: Metrics) -> None:
        self.service = service
        self.metrics = metrics

    def _predictor_label(self, name: str) -> str:
        # Only known predictors become label values: hostile input must not grow the metrics without bound.
        return name if name in self.service.registry.snapshot.predictors else "unknown"

    async def _observe(self, request: PredictRequest, code: grpc.StatusCode, start: float) -> None:
        label = self._predictor_label(request.predictor)
        self.metrics.requests.labels(label, code.name).inc()
        self.metrics.request_latency.labels(label).observe(time.perf_counter() - start)
        if code == grpc.StatusCode.OK:
            self.metrics.batch_rows.labels(label).observe(len(request.rows) or request.dense.num_rows)

    async def Predict(self, request: PredictRequest, context: grpc.aio.ServicerContext) -> PredictResponse:
        start = time.perf_counter()
        try:
            response = await self.service.predict(request, context.time_remaining())
        except Exception as exc:
            code, message = to_status(exc)
            await self._observe(request, code, start)
            await context.abort(code, message)
        await self._observe(request, grpc.StatusCode.OK, start)
        context.set_trailing_metadata(WORKER_METADATA)
        return response

    async def PredictStream(
        self, request_iterator: AsyncIterator[PredictRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[PredictStreamResponse]:
        """Responses in order of completion; an error answers its own message and the stream goes on."""
        done: asyncio.Queue[PredictStreamResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def score(request: PredictRequest) -> None:
            start = time.perf_counter()
            try:
                response = await self.service.predict(request, context.time_remaining())
                await self._observe(request, grpc.StatusCode.OK, start)
                await done.put(PredictStreamResponse(request_id=request.request_id, response=response))
            except Exception as exc:
                code, message = to_status(exc)
                await self._observe(request, code, start)
                error = Status(code=code.value[0], code_name=code.name, message=message)
                await done.put(PredictStreamResponse(request_id=request.request_id, error=error))
            finally:
                window.release()

        async def read() -> None:
            tasks: set[asyncio.Task[None]] = set()
            async for request in request_iterator:
                await window.acquire()
                task = asyncio.create_task(score(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            await done.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await done.get()) is not None:
                yield item
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
