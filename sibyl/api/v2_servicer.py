"""gRPC adapter for the Open Inference Protocol (KServe V2) `inference.GRPCInferenceService`.

Thin like PredictionServicer: an infer call takes the V2 path both ports share (api.v2.infer) with the protobuf
reader and writer (api.v2.messages); readiness, metadata and statistics are the same PredictionService's answers
as messages, so feature fill, shadows, the prediction log and metrics are those of sibyl's own Predict.
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
from sibyl.api import wire
from sibyl.api.status import WORKER_METADATA, to_status
from sibyl.api.v2 import messages
from sibyl.api.v2.infer import EXTENSIONS, Inference
from sibyl.api.v2.tensors import InferCall
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.serving.limits import Limits
from sibyl.serving.service import PredictionService

SERVICE = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]


class KServeServicer:
    def __init__(self, service: PredictionService) -> None:
        self.service = service
        self.inference = Inference(service)
        self.max_fields = wire.max_fields(service.options.limits)

    # ---- health and metadata
    async def ServerLive(self, request: v2.ServerLiveRequest, context: Context) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=self.service.live())

    async def ServerReady(self, request: v2.ServerReadyRequest, context: Context) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=self.service.ready())

    async def ServerMetadata(self, request: v2.ServerMetadataRequest, context: Context) -> v2.ServerMetadataResponse:
        return v2.ServerMetadataResponse(name="sibyl", version=__version__, extensions=EXTENSIONS)

    async def ModelReady(self, request: v2.ModelReadyRequest, context: Context) -> v2.ModelReadyResponse:
        return v2.ModelReadyResponse(ready=self.service.model_ready(request.name, request.version))

    async def ModelMetadata(self, request: v2.ModelMetadataRequest, context: Context) -> v2.ModelMetadataResponse:
        info = await self.service.model_info(request.name, request.version)
        return messages.model_metadata(info, self.service.versions(request.name))

    async def ModelConfig(self, request: v2.ModelConfigRequest, context: Context) -> v2.ModelConfigResponse:
        info = await self.service.model_info(request.name, request.version)
        return v2.ModelConfigResponse(config=messages.model_config(info, self.service.options.limits.max_rows))

    async def RepositoryIndex(self, request: v2.RepositoryIndexRequest, context: Context) -> v2.RepositoryIndexResponse:
        return messages.repository_index(self.service.repository(ready_only=request.ready))

    async def ModelStatistics(self, request: v2.ModelStatisticsRequest, context: Context) -> v2.ModelStatisticsResponse:
        return messages.model_statistics(self.service.statistics(request.name, request.version))

    # ---- inference
    async def ModelInfer(self, data: bytes, context: Context) -> v2.ModelInferResponse:
        """Bytes in: the V2 path admits the call before they are parsed (in pieces when large: api.wire)."""
        start = time.perf_counter()
        read = functools.partial(_read, data, self.max_fields, self.service.options.limits)
        context.set_trailing_metadata(WORKER_METADATA)
        try:
            return await self.inference.run(
                start, "", len(data), read, messages.infer_response, context.invocation_metadata, context.time_remaining
            )
        except Exception as exc:
            code, message = to_status(exc)
            await context.abort(code, message, WORKER_METADATA)
            raise  # unreachable: abort raises


def _read(data: bytes, max_fields: int, limits: Limits) -> InferCall:
    return messages.infer_call(wire.parse(v2.ModelInferRequest, data, max_fields), limits)


Handler = Callable[[Any, Context], Awaitable[Message]]


def add_to_server(servicer: KServeServicer, server: grpc.aio.Server) -> None:
    """Requests arrive as bytes and are parsed here: a malformed message is INVALID_ARGUMENT (grpc's own
    deserializer would answer UNKNOWN), and every error goes through sibyl.api.status like Predict's."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
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
    call: Handler = getattr(servicer, method.name)

    async def handle(data: bytes, context: Context) -> Message:
        context.set_trailing_metadata(WORKER_METADATA)
        try:
            size, max_fields = len(data), servicer.max_fields
            request = await servicer.service.off_loop(size, wire.parse, request_type, data, max_fields)
            return await call(request, context)
        except Exception as exc:
            code, message = to_status(exc)
            await context.abort(code, message, WORKER_METADATA)
            raise  # unreachable: abort raises

    return handle
