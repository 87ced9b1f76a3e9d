"""gRPC adapter for sibyl.v1.PredictionService: converts nothing it need not, delegates to the service."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import grpc

from sibyl.api.status import parse, to_status
from sibyl.serving.service import PredictionService
from sibyl.v1 import predict_pb2_grpc
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse, PredictStreamResponse, Status

WORKER_METADATA = (("sibyl-worker", str(os.getpid())),)  # which process answered: useful behind SO_REUSEPORT
STREAM_WINDOW = 32  # requests of one stream scored at once; the client is slowed by flow control beyond it
SERVICE = "sibyl.v1.PredictionService"
MALFORMED = PredictRequest()  # stands in for an unparsable request in metrics


def add_to_server(servicer: PredictionServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_..._to_server, except requests arrive as bytes and the servicer parses them:
    grpc answers UNKNOWN when its own deserializer fails; a malformed message is the caller's INVALID_ARGUMENT."""
    handlers = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            servicer.Predict, response_serializer=PredictResponse.SerializeToString
        ),
        "PredictStream": grpc.stream_stream_rpc_method_handler(
            servicer.PredictStream, response_serializer=PredictStreamResponse.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class PredictionServicer(predict_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictionService) -> None:
        self.service = service

    def _observe(self, request: PredictRequest, code: grpc.StatusCode, start: float) -> None:
        rows = len(request.rows) or request.dense.num_rows
        self.service.observe_call(request.predictor, code.name, time.perf_counter() - start, rows)

    async def Predict(self, data: bytes, context: grpc.aio.ServicerContext) -> PredictResponse:
        start = time.perf_counter()
        request = MALFORMED
        try:
            request = parse(PredictRequest, data)
            response = await self.service.predict(request, context.time_remaining())
        except Exception as exc:
            code, message = to_status(exc)
            self._observe(request, code, start)
            await context.abort(code, message)
        self._observe(request, grpc.StatusCode.OK, start)
        context.set_trailing_metadata(WORKER_METADATA)
        return response

    async def PredictStream(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[PredictStreamResponse]:
        """Responses in order of completion; an error answers its own message and the stream goes on."""
        done: asyncio.Queue[PredictStreamResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def score(data: bytes) -> None:
            start = time.perf_counter()
            request = MALFORMED
            try:
                request = parse(PredictRequest, data)
                response = await self.service.predict(request, context.time_remaining())
                self._observe(request, grpc.StatusCode.OK, start)
                await done.put(PredictStreamResponse(request_id=request.request_id, response=response))
            except Exception as exc:
                code, message = to_status(exc)
                self._observe(request, code, start)
                error = Status(code=code.value[0], code_name=code.name, message=message)
                await done.put(PredictStreamResponse(request_id=request.request_id, error=error))
            finally:
                window.release()

        async def read() -> None:
            tasks: set[asyncio.Task[None]] = set()
            try:
                async for data in request_iterator:
                    await window.acquire()
                    task = asyncio.create_task(score(data))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.gather(*tasks)
            finally:
                await done.put(None)  # also when the request stream breaks: else the writer waits forever

        reader = asyncio.create_task(read())
        try:
            while (item := await done.get()) is not None:
                yield item
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
