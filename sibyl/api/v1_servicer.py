"""gRPC adapter for sibyl.v1.PredictionService: converts nothing it need not, delegates to the service.

Each message is admitted (max_in_flight, draining) before its bytes are parsed; a large one is parsed in pieces
(api.wire) and decoded in a worker thread (server.decode_offload_bytes), so it cannot stall the event loop, and a
big one in a decode process (server.decode_process_bytes, serving.decode_pool), so it cannot hold the GIL either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from sibyl.api import big_requests, wire
from sibyl.api.status import WORKER_METADATA, to_status
from sibyl.observability.tracing import carrier
from sibyl.serving.decode import RowBatch
from sibyl.serving.service import PredictionService
from sibyl.v1 import predict_pb2_grpc
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse, PredictStreamResponse, Status

# Requests of one stream read and not yet answered on the wire: scored, or waiting to be written to a client
# that is not reading. Beyond it the server stops reading the stream, and HTTP/2 flow control slows the client.
STREAM_WINDOW = 32
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

    __slots__ = ("request", "rows", "start")

    def __init__(self) -> None:
        self.request, self.start = MALFORMED, time.perf_counter()
        self.rows = -1  # set when the request came back without its rows (a big one: api.big_requests)


class PredictionServicer(predict_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictionService) -> None:
        self.service = service
        self.max_fields = wire.max_fields(service.options.limits)

    def _observe(self, call: _Call, code: grpc.StatusCode) -> None:
        request = call.request
        rows = call.rows if call.rows >= 0 else len(request.rows) or request.dense.num_rows
        self.service.observe_call(request.predictor, code.name, time.perf_counter() - call.start, rows)

    async def _predict(
        self, data: bytes, call: _Call, context: Context, time_remaining: float | None
    ) -> PredictResponse:
        """Admission first, then parse and decode (in a worker thread when the message is large), then score."""
        service = self.service
        with service.admitted():
            if service.decode_pool.takes(len(data)):
                call.request, batch = await self._decode_big(data, time_remaining)
                call.rows = batch.num_rows
            else:
                call.request = await service.off_loop(len(data), wire.parse, PredictRequest, data, self.max_fields)
                batch = await service.off_loop(len(data), service.decode, call.request)
            trace = carrier(context.invocation_metadata()) if service.tracing is not None else None
            return await service.score(call.request, batch, time_remaining, trace)

    async def _decode_big(self, data: bytes, time_remaining: float | None) -> tuple[PredictRequest, RowBatch]:
        """Parse and decode in a decode process (a thread while the pool starts or after one died): the same
        functions as the inline path, so the same answer and log record (docs/design.md, decision 26)."""
        service = self.service
        args = (data, self.max_fields, service.options.limits)
        deadline = None if time_remaining is None else time.monotonic() + time_remaining
        decoded = await service.decode_pool.run(
            big_requests.parse_and_decode, args, lambda: big_requests.parse_and_decode(*args), deadline
        )
        header, batch, seconds = decoded
        service.metrics.stage_latency.labels("decode").observe(seconds)  # big calls only: .labels() is fine here
        return big_requests.header(header), batch

    async def Predict(self, data: bytes, context: Context) -> PredictResponse:
        call = _Call()
        try:
            response = await self._predict(data, call, context, context.time_remaining())
        except Exception as exc:
            code, message = to_status(exc)
            self._observe(call, code)
            await context.abort(code, message, WORKER_METADATA)
        self._observe(call, grpc.StatusCode.OK)
        context.set_trailing_metadata(WORKER_METADATA)
        return response

    async def PredictStream(
        self, request_iterator: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[PredictStreamResponse]:
        """Responses in order of completion; an error answers its own message and the stream goes on.

        The window is released when a response has been written (grpc resumes the generator once its send
        completed, which HTTP/2 flow control holds while the client does not read), not when it is scored: a
        client that writes and never reads makes the server stop reading, holding at most STREAM_WINDOW
        answers (sibyl_stream_pending_responses counts them)."""
        context.set_trailing_metadata(WORKER_METADATA)  # sent when the stream ends, however it ends
        done: asyncio.Queue[PredictStreamResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)
        pending = self.service.metrics.stream_pending
        queued = 0  # answers of this stream scored and not yet written

        async def score(data: bytes) -> None:
            nonlocal queued
            call = _Call()
            try:
                response = await self._predict(data, call, context, context.time_remaining())
                self._observe(call, grpc.StatusCode.OK)
                answer = PredictStreamResponse(request_id=call.request.request_id, response=response)
            except Exception as exc:
                code, message = to_status(exc)
                self._observe(call, code)
                error = Status(code=code.value[0], code_name=code.name, message=message)
                answer = PredictStreamResponse(request_id=call.request.request_id, error=error)
            queued += 1
            pending.inc()
            done.put_nowait(answer)  # at most STREAM_WINDOW answers wait: the window bounds the queue

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
                done.put_nowait(None)  # also when the request stream breaks: else the writer waits forever

        reader = asyncio.create_task(read())
        try:
            while (item := await done.get()) is not None:
                yield item  # resumes once written
                queued -= 1
                pending.dec()
                window.release()
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            if queued:  # the stream ended (cancelled, broken) with answers never written
                pending.dec(queued)
