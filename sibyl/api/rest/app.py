"""The KServe V2 REST API as a bare ASGI application over the same PredictionService as the gRPC servicers.

Routes (the V2 REST spec, plus Triton's extensions that tritonclient.http and perf_analyzer call):

    GET  /v2                                           server metadata
    GET  /v2/health/live | /v2/health/ready            200 = true, 400 = false (open without a token)
    GET  /v2/models/{name}[/versions/{v}]              model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready        200 = ready, 400 = not
    POST /v2/models/{name}[/versions/{v}]/infer        inference: JSON tensors or the binary-data extension
    GET  /v2/models/{name}[/versions/{v}]/config       Triton model configuration
    GET  /v2/models[/{name}[/versions/{v}]]/stats      Triton statistics
    POST /v2/repository/index                          Triton repository index ({"ready": true} filters)

Errors answer {"error": "..."} with the HTTP status of the gRPC code (api.status.to_http), so a call refused
over REST is refused for the same reason, with the same message, as over gRPC. Bearer tokens, the message
size limit and the metrics are the gRPC port's.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from sibyl import __version__
from sibyl.api import v2_convert as convert
from sibyl.api.auth import SCHEME, TokenSet
from sibyl.api.rest import codec
from sibyl.api.status import PayloadTooLarge, to_http
from sibyl.api.v2_servicer import EXTENSIONS
from sibyl.errors import InvalidArgument, NotFound, SibylError
from sibyl.kserve.grpc_predict_v2_pb2 import ModelInferRequest
from sibyl.observability.metrics import Metrics
from sibyl.observability.tracing import carrier
from sibyl.serving.decode import RowBatch
from sibyl.serving.metadata import ModelInfo
from sibyl.serving.service import PredictionService
from sibyl.v1.predict_pb2 import PredictRequest

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]
OCTETS = b"application/octet-stream"
WORKER = (b"sibyl-worker", str(os.getpid()).encode())  # which process answered, as the gRPC trailing metadata
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})  # probes work without a token, as over gRPC


class Unauthenticated(SibylError):
    code = grpc.StatusCode.UNAUTHENTICATED


class MethodNotAllowed(InvalidArgument):
    http_status = 405

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"use {allowed} for this path, not {method}")
        self.allowed = allowed


class Reply:
    """One response: status, body and extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int = 200, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None):
        self.status, self.body, self.headers = status, body, headers if headers is not None else JSON

    @classmethod
    def of(cls, doc: Any) -> Reply:
        return cls(200, json.dumps(doc, separators=(",", ":")).encode())

    @classmethod
    def truth(cls, value: bool, why: str) -> Reply:
        """Health and readiness: the status is the answer; a false one says why."""
        return cls(200) if value else cls(400, json.dumps({"error": why}).encode())


class RestApp:
    def __init__(
        self, service: PredictionService, max_body: int, tokens: TokenSet | None = None, metrics: Metrics | None = None
    ) -> None:
        self.service, self.max_body, self.tokens = service, max_body, tokens
        self._rejected = metrics.rejected.labels("unauthenticated") if metrics is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is served
            return
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        infer_model = None
        try:
            if self.tokens is not None and path not in OPEN_PATHS:
                self._authenticate(headers.get("authorization"))
            body = await self._body(receive, headers.get("content-length"))
            parts = path.strip("/").split("/")
            if len(parts) >= 3 and parts[:2] == ["v2", "models"] and parts[-1] == "infer":
                infer_model = parts[2]
            reply = await self._route(method, parts, body, headers, start)
        except Exception as exc:
            status, code, message = to_http(exc)
            if infer_model is not None:
                self._observe(infer_model, code, start)
            reply = Reply(status, json.dumps({"error": message}).encode())
            if isinstance(exc, MethodNotAllowed):
                reply.headers = [*JSON, (b"allow", exc.allowed.encode())]
        headers_out = [*reply.headers, (b"content-length", str(len(reply.body)).encode()), WORKER]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers_out})
        await send({"type": "http.response.body", "body": reply.body})

    def _authenticate(self, header: str | None) -> None:
        presented = None
        if header is not None and header[: len(SCHEME)].lower() == SCHEME:
            presented = header[len(SCHEME) :].strip().encode()
        if presented is not None and self.tokens is not None and self.tokens.accepts(presented):
            return
        if self._rejected is not None:
            self._rejected.inc()
        what = "no bearer token" if presented is None else "bearer token not accepted"
        raise Unauthenticated(f"{what}: send the header 'Authorization: Bearer <token>'")

    async def _body(self, receive: Receive, length: str | None) -> bytes:
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise PayloadTooLarge(self._too_large(int(length)))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidArgument("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(self._too_large(size))
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return (
            f"request body of {size} bytes is over the server's limit of {self.max_body} "
            "(server.max_message_bytes); send fewer rows per call"
        )

    # ---- routing
    async def _route(self, method: str, parts: list[str], body: bytes, headers: dict[str, str], start: float) -> Reply:
        if parts == ["v2"]:
            _allow(method, "GET")
            return Reply.of({"name": "sibyl", "version": __version__, "extensions": list(EXTENSIONS)})
        if parts[:2] == ["v2", "health"] and len(parts) == 3 and parts[2] in ("live", "ready"):
            _allow(method, "GET")
            if parts[2] == "live":
                return Reply.truth(self.service.live(), "not live")
            return Reply.truth(self.service.ready(), "not ready: no predictor loaded yet, or draining")
        if parts == ["v2", "repository", "index"]:
            _allow(method, "POST")
            ready = bool(codec.json_body(body, "repository index").get("ready", False))
            return Reply.of(codec.plain(convert.repository_index(self.service.repository(ready_only=ready)))["models"])
        if parts == ["v2", "models", "stats"]:
            _allow(method, "GET")
            return Reply.of(codec.plain(convert.model_statistics(self.service.statistics())))
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            name, rest, version = parts[2], parts[3:], ""
            if rest[:1] == ["versions"] and len(rest) >= 2:
                version, rest = rest[1], rest[2:]
            action = rest[0] if len(rest) == 1 else "" if not rest else None
            if action == "infer":
                _allow(method, "POST")
                return await self._infer(name, version, body, headers, start)
            if action is not None:
                _allow(method, "GET")
            if action == "":
                info = await self.service.model_info(name, version)
                return Reply.of(codec.plain(convert.model_metadata(info, self.service.versions(name))))
            if action == "ready":
                ready = self.service.model_ready(name, version)
                return Reply.truth(ready, f"predictor {name!r}{' version ' + version if version else ''} not ready")
            if action == "config":
                info = await self.service.model_info(name, version)
                return Reply.of(codec.plain(convert.model_config(info, self.service.options.limits.max_rows)))
            if action == "stats":
                return Reply.of(codec.plain(convert.model_statistics(self.service.statistics(name, version))))
        raise NotFound(
            f"no route {method} /{'/'.join(parts)}; V2 REST paths are /v2, /v2/health/live|ready and "
            "/v2/models/NAME[/versions/V][/ready|/infer]"
        )

    async def _infer(self, name: str, version: str, body: bytes, headers: dict[str, str], start: float) -> Reply:
        """Admitted (max_in_flight, draining) before the body is parsed, as over gRPC; a large body is parsed,
        converted and decoded in a worker thread (server.decode_offload_bytes)."""
        service, size = self.service, len(body)
        header_length = headers.get(codec.HEADER_LENGTH)
        with service.admitted():
            request, binary = await service.off_loop(size, codec.parse_infer, body, header_length, name, version)
            convert.check_outputs(request)  # before scoring: a refused call must not reach the prediction log
            info = await service.model_info(name, version)
            predict, batch = await service.off_loop(size, self._decode, request, info)
            trace = carrier(headers.items()) if service.tracing is not None else None
            respond = functools.partial(convert.to_infer_response, request=request)
            response = await service.score(predict, batch, _timeout_s(request), trace, respond)
        out, length = codec.encode_infer(response, binary)
        self._observe(name, grpc.StatusCode.OK, start, batch.num_rows)
        if length is None:
            return Reply(200, out)
        return Reply(200, out, [(b"content-type", OCTETS), (codec.HEADER_LENGTH.encode(), str(length).encode())])

    def _decode(self, request: ModelInferRequest, info: ModelInfo) -> tuple[PredictRequest, RowBatch]:
        matrix_inputs = {info.input_name: info.columns}
        return self.service.timed_decode(convert.to_rows, request, info.override, matrix_inputs)

    def _observe(self, predictor: str, code: grpc.StatusCode, start: float, rows: int = 0) -> None:
        """The V2 gRPC servicer's accounting: metrics, and the statistics extension's counts."""
        self.service.observe_call(predictor, code.name, time.perf_counter() - start, rows, counted=True)


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(method, allowed)


def _timeout_s(request: Any) -> float | None:
    """Triton's "timeout" request parameter (microseconds) is the call's deadline; HTTP carries none of its own."""
    timeout = request.parameters.get("timeout")
    if timeout is None or timeout.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
        return None
    micros = getattr(timeout, timeout.WhichOneof("parameter_choice"))
    return micros / 1e6 if micros > 0 else None
