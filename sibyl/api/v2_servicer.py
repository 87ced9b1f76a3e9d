"""gRPC adapter for the Open Inference Protocol (KServe V2) `inference.GRPCInferenceService`.

Thin like PredictionServicer: convert (sibyl.api.v2_convert) and delegate to the same PredictionService, for
readiness, metadata and statistics too, so feature fill, shadows, the prediction log and metrics are those
of sibyl's own Predict.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from sibyl import __version__
from sibyl.api import v2_convert as convert
from sibyl.api import wire
from sibyl.api.status import to_status
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.observability.tracing import carrier
from sibyl.serving.decode import RowBatch
from sibyl.serving.metadata import ModelInfo
from sibyl.serving.service import PredictionService
from sibyl.v1.predict_pb2 import PredictRequest

SERVICE = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
EXTENSIONS = ("model_repository", "model_configuration", "statistics")


class KServeServicer:
    def __init__(self, service: PredictionService) -> None:
        self.service = service
        self.max_fields = wire.max_fields(service.options.limits)

    # ---- health and metadata
    async def ServerLive(
        self, request: v2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=self.service.live())

    async def ServerReady(
        self, request: v2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=self.service.ready())

    async def ServerMetadata(
        self, request: v2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerMetadataResponse:
        return v2.ServerMetadataResponse(name="sibyl", version=__version__, extensions=EXTENSIONS)

    async def ModelReady(
        self, request: v2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelReadyResponse:
        return v2.ModelReadyResponse(ready=self.service.model_ready(request.name, request.version))

    async def ModelMetadata(
        self, request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelMetadataResponse:
        info = await self.service.model_info(request.name, request.version)
        return convert.model_metadata(info, self.service.versions(request.name))

    async def ModelConfig(
        self, request: v2.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelConfigResponse:
        info = await self.service.model_info(request.name, request.version)
        return v2.ModelConfigResponse(config=convert.model_config(info, self.service.options.limits.max_rows))

    async def RepositoryIndex(
        self, request: v2.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> v2.RepositoryIndexResponse:
        return convert.repository_index(self.service.repository(ready_only=request.ready))

    async def ModelStatistics(
        self, request: v2.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelStatisticsResponse:
        return convert.model_statistics(self.service.statistics(request.name, request.version))

    # ---- inference
    async def ModelInfer(self, data: bytes, context: grpc.aio.ServicerContext) -> v2.ModelInferResponse:
        """Bytes in: admitted (max_in_flight, draining) before they are parsed; a large request is parsed in pieces
        (api.wire) and converted and decoded in a worker thread (server.decode_offload_bytes)."""
        start = time.perf_counter()
        name = ""
        service, size = self.service, len(data)
        try:
            with service.admitted():
                request = await service.off_loop(size, wire.parse, v2.ModelInferRequest, data, self.max_fields)
                name = request.model_name
                convert.check_outputs(request)  # before scoring: a refused call must not reach the prediction log
                info = await service.model_info(request.model_name, request.model_version)
                predict, batch = await service.off_loop(size, self._decode, request, info)
                trace = carrier(context.invocation_metadata()) if service.tracing is not None else None
                respond = functools.partial(convert.to_infer_response, request=request)
                response = await service.score(predict, batch, context.time_remaining(), trace, respond)
        except Exception as exc:
            code, message = to_status(exc)
            self.observe(name, code, start)
            await context.abort(code, message)
        self.observe(request.model_name, grpc.StatusCode.OK, start, batch.num_rows)
        return response

    def _decode(self, request: v2.ModelInferRequest, info: ModelInfo) -> tuple[PredictRequest, RowBatch]:
        matrix_inputs = {info.input_name: info.columns}
        return self.service.timed_decode(convert.to_rows, request, info.override, matrix_inputs)

    def observe(self, predictor: str, code: grpc.StatusCode, start: float, rows: int = 0) -> None:
        """Metrics, and the statistics extension's counts: V2 statistics count ModelInfer calls only."""
        self.service.observe_call(predictor, code.name, time.perf_counter() - start, rows, counted=True)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


def add_to_server(servicer: KServeServicer, server: grpc.aio.Server) -> None:
    """Requests arrive as bytes and are parsed here: a malformed message is INVALID_ARGUMENT (grpc's own
    deserializer would answer UNKNOWN), and every error goes through sibyl.api.status like Predict's."""
    handlers = {}
    for method in v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        request_type = getattr(v2, method.input_type.name)
        response_type = getattr(v2, method.output_type.name)
        # ModelInfer takes the bytes itself (admission before parsing) and answers its own errors.
        handler = servicer.ModelInfer if method.name == "ModelInfer" else _wrap(servicer, method, request_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            handler, response_serializer=response_type.SerializeToString
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def _wrap(servicer: KServeServicer, method: MethodDescriptor, request_type: type[Message]) -> Handler:
    call = getattr(servicer, method.name)

    async def handle(data: bytes, context: grpc.aio.ServicerContext) -> Message:
        try:
            size, max_fields = len(data), servicer.max_fields
            request = await servicer.service.off_loop(size, wire.parse, request_type, data, max_fields)
            return await call(request, context)
        except Exception as exc:
            code, message = to_status(exc)
            await context.abort(code, message)
            raise  # unreachable: abort raises

    return handle
