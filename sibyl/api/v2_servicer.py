"""gRPC adapter for the Open Inference Protocol (KServe V2) `inference.GRPCInferenceService`.

Thin like PredictionServicer: convert (sibyl.api.v2_convert) and delegate to the same PredictionService,
so feature fill, shadows, the prediction log and metrics are those of sibyl's own Predict.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from sibyl import __version__
from sibyl.api import v2_convert as convert
from sibyl.api.status import to_status
from sibyl.errors import InvalidArgument
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.models.predictor import ModelRef, PredictorConfig
from sibyl.models.runtime import OnnxModel
from sibyl.observability.metrics import Metrics
from sibyl.serving.service import PredictionService

SERVICE = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
EXTENSIONS = ("model_repository", "model_configuration", "statistics")


@dataclass
class Stats:
    """Per predictor, for Triton's statistics extension (perf_analyzer reports server-side times from it)."""

    calls: int = 0
    rows: int = 0
    ok: int = 0
    ok_ns: int = 0
    failed: int = 0
    failed_ns: int = 0
    last_ms: int = 0


class KServeServicer:
    def __init__(self, service: PredictionService, metrics: Metrics) -> None:
        self.service = service
        self.registry = service.registry
        self.metrics = metrics
        self.stats: dict[str, Stats] = {}

    # ---- health and metadata
    async def ServerLive(
        self, request: v2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: v2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerReadyResponse:
        # Not ready while draining: V2 clients and balancers stop sending, as with the gRPC health service.
        return v2.ServerReadyResponse(ready=bool(self.registry.snapshot.predictors) and not self.service.draining)

    async def ServerMetadata(
        self, request: v2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerMetadataResponse:
        return v2.ServerMetadataResponse(name="sibyl", version=__version__, extensions=EXTENSIONS)

    async def ModelReady(
        self, request: v2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelReadyResponse:
        config = self.registry.snapshot.predictors.get(request.name)
        if config is None:
            return v2.ModelReadyResponse(ready=False)
        ref = ModelRef.parse(convert.target(request.name, request.version, config.primary).override or config.primary)
        return v2.ModelReadyResponse(ready=(ref.name, ref.version or "") in self.registry.snapshot.models)

    async def ModelMetadata(
        self, request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelMetadataResponse:
        config, model = await self._model(request.name, request.version)
        return convert.model_metadata(request.name, model, self._versions(config))

    async def ModelConfig(
        self, request: v2.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelConfigResponse:
        _, model = await self._model(request.name, request.version)
        max_batch = min(self.service.options.limits.max_rows, 2**31 - 1)
        return v2.ModelConfigResponse(config=convert.model_config(request.name, model, max_batch))

    async def RepositoryIndex(
        self, request: v2.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> v2.RepositoryIndexResponse:
        """Predictors are the V2 models; version is the primary that answers them."""
        snap = self.registry.snapshot
        index = v2.RepositoryIndexResponse.ModelIndex
        models = [index(name=n, version=c.primary, state="READY") for n, c in sorted(snap.predictors.items())]
        if not request.ready:
            models += [index(name=n, state="UNAVAILABLE", reason=why) for n, why in sorted(snap.failed.items())]
        return v2.RepositoryIndexResponse(models=models)

    async def ModelStatistics(
        self, request: v2.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelStatisticsResponse:
        if request.name:
            self.registry.predictor(request.name)  # NotFound for an unknown name
        names = [request.name] if request.name else sorted(self.registry.snapshot.predictors)
        out = v2.ModelStatisticsResponse()
        for name in names:
            s = self.stats.get(name, Stats())
            duration = v2.StatisticDuration
            out.model_stats.append(
                v2.ModelStatistics(
                    name=name,
                    # perf_analyzer finds its model's stats by version: the primary's (numeric, as Triton's are)
                    version=request.version or self.registry.predictor(name).primary.partition("@")[2],
                    last_inference=s.last_ms,
                    inference_count=s.rows,
                    execution_count=s.calls,
                    inference_stats=v2.InferStatistics(
                        success=duration(count=s.ok, ns=s.ok_ns), fail=duration(count=s.failed, ns=s.failed_ns)
                    ),
                )
            )
        return out

    # ---- inference
    async def ModelInfer(
        self, request: v2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelInferResponse:
        start = time.perf_counter()
        convert.check_outputs(request)  # before scoring: a refused call must not reach the prediction log
        config, model = await self._model(request.model_name, request.model_version)
        target = convert.target(request.model_name, request.model_version, config.primary)
        predict = convert.to_predict_request(request, target, {model.manifest.input_name: model.columns})
        response = await self.service.predict(predict, context.time_remaining())
        answer = convert.to_infer_response(response, request)
        self._observe(request.model_name, grpc.StatusCode.OK, start, response.num_rows)
        return answer

    # ---- helpers
    async def _model(self, name: str, version: str) -> tuple[PredictorConfig, OnnxModel]:
        """The predictor, and the model a request with this version would be scored by (its inputs)."""
        config = self.registry.predictor(name)
        ref = convert.target(name, version, config.primary).override or config.primary
        return config, await self.registry.model(ModelRef.parse(ref))

    def _versions(self, config: PredictorConfig) -> list[str]:
        primary = config.primary.partition("@")[0]
        return sorted(v for m, v in self.registry.snapshot.models if m == primary)

    def _observe(self, predictor: str, code: grpc.StatusCode, start: float, rows: int = 0) -> None:
        known = predictor in self.registry.snapshot.predictors
        label = predictor if known else "unknown"  # hostile names must not grow the metrics without bound
        elapsed = time.perf_counter() - start
        self.metrics.requests.labels(label, code.name).inc()
        self.metrics.request_latency.labels(label).observe(elapsed)
        if not known:
            return
        s = self.stats.setdefault(predictor, Stats())
        if code == grpc.StatusCode.OK:
            self.metrics.batch_rows.labels(label).observe(rows)
            s.calls += 1
            s.rows += rows
            s.ok += 1
            s.ok_ns += int(elapsed * 1e9)
            s.last_ms = int(time.time() * 1000)
        else:
            s.failed += 1
            s.failed_ns += int(elapsed * 1e9)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


def add_to_server(servicer: KServeServicer, server: grpc.aio.Server) -> None:
    """Requests arrive as bytes and are parsed here: a malformed message is INVALID_ARGUMENT (grpc's own
    deserializer would answer UNKNOWN), and every error goes through sibyl.api.status like Predict's."""
    handlers = {}
    for method in v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        request_type = getattr(v2, method.input_type.name)
        response_type = getattr(v2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _wrap(servicer, method.name, getattr(servicer, method.name), request_type),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def _wrap(servicer: KServeServicer, name: str, method: Handler, request_type: type[Message]) -> Handler:
    async def handle(data: bytes, context: grpc.aio.ServicerContext) -> Message:
        start = time.perf_counter()
        request: Any = None
        try:
            request = _parse(request_type, data)
            return await method(request, context)
        except Exception as exc:
            code, message = to_status(exc)
            if name == "ModelInfer":
                servicer._observe(getattr(request, "model_name", ""), code, start)
            await context.abort(code, message)
            raise  # unreachable: abort raises

    return handle


def _parse(request_type: type[Message], data: bytes) -> Message:
    try:
        return request_type.FromString(data)
    except DecodeError as exc:
        raise InvalidArgument(
            f"message is not a valid inference.{request_type.__name__} ({exc}); check the client's proto"
        ) from None
