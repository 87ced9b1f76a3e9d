"""gRPC adapter for sibyl.v1.PredictionService: converts nothing it need not, delegates to the service.

Each message is admitted (max_in_flight, draining) before its bytes are parsed; a large one is parsed in pieces
(api.wire) and decoded in a worker thread (server.decode_offload_bytes), so it cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from sibyl.api import wire
from sibyl.api.status import to_status
from sibyl.observability.tracing import carrier
from sibyl.serving.service import PredictionService
from sibyl.v1 import predict_pb2_grpc
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse, PredictStreamResponse, Status

WORKER_METADATA = (("sibyl-worker", str(os.getpid())),)  # which process answered: useful behind SO_REUSEPORT
STREAM_WINDOW = 32  # requests of one stream scored at once; the client is slowed by flow control beyond it
SERVICE = "sibyl.v1.PredictionService"
MALFORMED = PredictRequest()  # stands in for an unparsable request in metrics
Context = grpc.aio.ServicerContext[Any, Any]


def add_to_server(servicer: PredictionServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_..._to_server, except requests arrive as bytes and the servicer parses them:
    grpc answers UNKNOWN when its own deserializer fails; a malformed message is the caller's INVALID_ARGUMENT."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            servicer.Predict, response_serializer=PredictResponse.SerializeToString
        ),
        "PredictStream": grpc.stream_stream_rpc_method_handler(
            servicer.PredictStream, response_serializer=PredictStreamResponse.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class _Call:
    """One message's request as far as it got (for metrics when it fails) and when it started."""

    __slots__ = ("request", "start")

    def __init__(self) -> None:
        self.request, self.start = MALFORMED, time.perf_counter()


class PredictionServicer(predict_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictionService) -> None:
        self.service = service
        self.max_fields = wire.max_fields(service.options.limits)

    def _observe(self, call: _Call, code: grpc.StatusCode) -> None:
        request = call.request
        rows = len(request.rows) or request.dense.num_rows
        self.service.observe_call(request.predictor, code.name, time.perf_counter() - call.start, rows)

    async def _predict(
        self, data: bytes, call: _Call, context: Context, time_remaining: float | None
    ) -> PredictResponse:
        """Admission first, then parse and decode (in a worker thread when the message is large), then score."""
        service = self.service
        with service.admitted():
            call.request = await service.off_loop(len(data), wire.parse, PredictRequest, data, self.max_fields)
            batch = await service.off_loop(len(data), service.decode, call.request)
            trace = carrier(context.invocation_metadata()) if service.tracing is not None else None
            return await service.score(call.request, batch, time_remaining, trace)

    async def Predict(self, data: bytes, context: Context) -> PredictResponse:
        call = _Call()
        try:
            response = await self._predict(data, call, context, context.time_remaining())
        except Exception as exc:
            code, message = to_status(exc)
            self._observe(call, code)
            await context.abort(code, message)
        self._observe(call, grpc.StatusCode.OK)
        context.set_trailing_metadata(WORKER_METADATA)
        return response

    async def PredictStream(
        self, request_iterator: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[PredictStreamResponse]:
        """Responses in order of completion; an error answers its own message and the stream goes on."""
        done: asyncio.Queue[PredictStreamResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def score(data: bytes) -> None:
            call = _Call()
            try:
                response = await self._predict(data, call, context, context.time_remaining())
                self._observe(call, grpc.StatusCode.OK)
                await done.put(PredictStreamResponse(request_id=call.request.request_id, response=response))
            except Exception as exc:
                code, message = to_status(exc)
                self._observe(call, code)
                error = Status(code=code.value[0], code_name=code.name, message=message)
                await done.put(PredictStreamResponse(request_id=call.request.request_id, error=error))
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
