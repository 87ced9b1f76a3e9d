"""The KServe V2 REST API as a bare ASGI application over the same PredictionService as the gRPC servicers.

Routes (ROUTES: the V2 REST spec, plus Triton's extensions that tritonclient.http and perf_analyzer call):

    GET  /v2                                           server metadata
    GET  /v2/health/live | /v2/health/ready            200 = true, 400 = false (open without a token)
    GET  /v2/models/{name}[/versions/{v}]              model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready        200 = ready, 400 = not
    POST /v2/models/{name}[/versions/{v}]/infer        inference: JSON tensors or the binary-data extension
    GET  /v2/models/{name}[/versions/{v}]/config       Triton model configuration
    GET  /v2/models[/{name}[/versions/{v}]]/stats      Triton statistics
    POST /v2/repository/index                          Triton repository index ({"ready": true} filters)
    POST /v1/outcomes                                  report outcomes (api/rest/outcomes.py; not V2: sibyl's own)

An infer call takes the V2 path both ports share (api.v2.infer); this module only reads the HTTP request and
writes the reply. Errors answer {"error": "..."} with the HTTP status of the gRPC code (api.status.to_http), so
a call refused over REST is refused for the same reason, with the same message, as over gRPC. Bearer tokens, the
message size limit and the metrics are the gRPC port's. A POST body's Content-Type and Content-Encoding are
checked before it is read (MEDIA_TYPES; 415 otherwise); limits on the connection itself (header size, count and
read time, pipelining) are api.rest.connection's.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from sibyl import __version__
from sibyl.api.auth import SCHEME, TokenSet
from sibyl.api.outcomes import OutcomeIntake
from sibyl.api.rest import codec, outcomes
from sibyl.api.status import PayloadTooLarge, code_of, to_http
from sibyl.api.v2 import messages
from sibyl.api.v2.infer import EXTENSIONS, Inference
from sibyl.errors import InvalidArgument, NotFound, SibylError
from sibyl.observability.metrics import Metrics
from sibyl.serving.service import PredictionService

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
JSON: Headers = [(b"content-type", b"application/json")]
OCTETS = b"application/octet-stream"
WORKER = (b"sibyl-worker", str(os.getpid()).encode())  # which process answered, as the gRPC trailing metadata
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})  # probes work without a token, as over gRPC
# A POST body's media types (docs/protocols.md): JSON, the binary-data extension's bytes, and what curl -d and
# libcurl send unless told otherwise; no Content-Type means JSON. Any other is 415, as is a Content-Encoding.
MEDIA_TYPES = frozenset({"application/json", "application/octet-stream", "application/x-www-form-urlencoded"})
CHARSETS = frozenset({"utf-8", "utf8"})


class Unauthenticated(SibylError):
    code = grpc.StatusCode.UNAUTHENTICATED


class MethodNotAllowed(InvalidArgument):
    http_status = 405

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"use {allowed} for this path, not {method}")
        self.allowed = allowed


class UnsupportedMediaType(InvalidArgument):
    http_status = 415

    def __init__(self, message: str, accept: tuple[bytes, bytes]) -> None:
        super().__init__(message)
        self.accept = accept  # the header that says what is accepted


class Reply:
    """One response: status, body and extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int = 200, body: bytes = b"", headers: Headers | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers if headers is not None else JSON

    @classmethod
    def of(cls, doc: Any) -> Reply:
        return cls(200, codec.to_json(doc))

    @classmethod
    def probe(cls, passed: bool, why: str) -> Reply:
        """A health or readiness probe's answer: the status says it (200 yes, 400 no); a no says why."""
        return cls(200) if passed else cls(400, codec.to_json({"error": why}))

    @classmethod
    def error(cls, exc: BaseException) -> Reply:
        status, _, message = to_http(exc)
        reply = cls(status, codec.to_json({"error": message}))
        if isinstance(exc, MethodNotAllowed):
            reply.headers = [*JSON, (b"allow", exc.allowed.encode())]
        elif isinstance(exc, UnsupportedMediaType):
            reply.headers = [*JSON, exc.accept]
        return reply


@dataclass(frozen=True, slots=True)
class Request:
    """What a route's handler reads of one HTTP request."""

    params: dict[str, str]  # the path's {name} and {version}
    body: bytes
    headers: dict[str, str]  # lower-case names
    start: float  # time.perf_counter() when it arrived


class RestApp:
    def __init__(
        self, service: PredictionService, max_body: int, tokens: TokenSet | None = None, metrics: Metrics | None = None
    ) -> None:
        self.service, self.max_body, self.tokens, self.metrics = service, max_body, tokens, metrics
        self.inference = Inference(service)
        self.outcomes: OutcomeIntake | None = None  # POST /v1/outcomes answers 404 without it (api.server sets it)
        self._rejected = metrics.rejected.labels("unauthenticated") if metrics is not None else None

    def refused(self, reason: str) -> None:
        """Count a request refused before any work (sibyl_rejected{reason}); the connection's refusals too."""
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is served
            return
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        routes = match(path)
        chosen = next(((r, params) for r, params in routes if r.method == method), None)
        try:
            if self.tokens is not None and path not in OPEN_PATHS:
                self._authenticate(headers.get("authorization"))
            if method == "POST" and (
                headers.get("content-type", "application/json") not in MEDIA_TYPES or headers.get("content-encoding")
            ):
                self._media(headers.get("content-type"), headers.get("content-encoding"))
            body = await self._body(receive, headers.get("content-length"))
            if chosen is None:
                if routes:
                    raise MethodNotAllowed(method, ", ".join(dict.fromkeys(r.method for r, _ in routes)))
                raise NotFound(
                    f"no route {method} /{path.strip('/')}; V2 REST paths are /v2, /v2/health/live|ready and "
                    "/v2/models/NAME[/versions/V][/ready|/infer]"
                )
        except Exception as exc:
            if routes and routes[0][0].handler is RestApp.infer:  # counted as the infer call it was meant to be
                self.inference.observe(routes[0][1]["name"], code_of(exc), start)
            reply = Reply.error(exc)
        else:
            try:
                route, params = chosen
                reply = await route.handler(self, Request(params, body, headers, start))
            except Exception as exc:
                reply = Reply.error(exc)
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

    def _media(self, content_type: str | None, encoding: str | None) -> None:
        """Refuse (415) a body that says it is not JSON nor binary data, or that is encoded (compressed)."""
        if content_type is not None:
            media, *params = content_type.split(";")
            media = media.strip().lower()
            charsets = [
                v.strip().strip('"').lower()
                for k, _, v in (p.partition("=") for p in params)
                if k.strip().lower() == "charset"
            ]
            if not (media in MEDIA_TYPES or media.endswith("+json")) or any(c not in CHARSETS for c in charsets):
                self.refused("http_media_type")
                raise UnsupportedMediaType(
                    f"Content-Type {content_type[:100]!r} is not accepted: send application/json (UTF-8), or "
                    "application/octet-stream with Inference-Header-Content-Length for binary data",
                    (b"accept-post", b"application/json, application/octet-stream"),
                )
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            self.refused("http_content_encoding")
            raise UnsupportedMediaType(
                f"Content-Encoding {encoding[:100]!r} is not accepted: send the body uncompressed",
                (b"accept-encoding", b"identity"),
            )

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

    # ---- handlers (ROUTES)
    async def infer(self, request: Request) -> Reply:
        name, version, body = request.params["name"], request.params.get("version", ""), request.body
        header_length = request.headers.get(codec.HEADER_LENGTH)
        read = functools.partial(codec.parse_infer, body, header_length, name, version)
        # HTTP carries no deadline of its own: a call may set Triton's "timeout" parameter (InferCall.timeout_s).
        out, length = await self.inference.run(
            request.start, name, len(body), read, codec.encode_answer, request.headers.items
        )
        if length is None:
            return Reply(200, out)
        return Reply(200, out, [(b"content-type", OCTETS), (codec.HEADER_LENGTH.encode(), str(length).encode())])

    async def report_outcomes(self, request: Request) -> Reply:
        if self.outcomes is None:
            raise NotFound("this server takes no outcomes")
        intake, body = self.outcomes, request.body
        with self.service.admitted():
            checked = await self.service.off_loop(len(body), outcomes.parse, body, intake)
            return Reply(200, outcomes.reply(intake.report(checked)))

    async def server_metadata(self, request: Request) -> Reply:
        return Reply.of({"name": "sibyl", "version": __version__, "extensions": list(EXTENSIONS)})

    async def live(self, request: Request) -> Reply:
        return Reply.probe(self.service.live(), "not live")

    async def ready(self, request: Request) -> Reply:
        return Reply.probe(self.service.ready(), "not ready: no predictor loaded yet, or draining")

    async def repository_index(self, request: Request) -> Reply:
        ready = bool(codec.json_body(request.body, "repository index").get("ready", False))
        index = messages.repository_index(self.service.repository(ready_only=ready))
        return Reply.of(codec.triton_json(index)["models"])

    async def model_metadata(self, request: Request) -> Reply:
        name, version = request.params["name"], request.params.get("version", "")
        info = await self.service.model_info(name, version)
        return Reply.of(codec.triton_json(messages.model_metadata(info, self.service.versions(name))))

    async def model_ready(self, request: Request) -> Reply:
        name, version = request.params["name"], request.params.get("version", "")
        ready = self.service.model_ready(name, version)
        return Reply.probe(ready, f"predictor {name!r}{' version ' + version if version else ''} not ready")

    async def model_config(self, request: Request) -> Reply:
        name, version = request.params["name"], request.params.get("version", "")
        info = await self.service.model_info(name, version)
        return Reply.of(codec.triton_json(messages.model_config(info, self.service.options.limits.max_rows)))

    async def model_statistics(self, request: Request) -> Reply:
        stats = self.service.statistics(request.params.get("name", ""), request.params.get("version", ""))
        return Reply.of(codec.triton_json(messages.model_statistics(stats)))


# ---- routing
@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: tuple[str, ...]  # path segments; "{name}" and "{version}" match any one segment
    handler: Callable[[RestApp, Request], Awaitable[Reply]]


def _model_routes(method: str, action: str, handler: Callable[[RestApp, Request], Awaitable[Reply]]) -> list[Route]:
    """/v2/models/{name}[/versions/{version}][/action]"""
    tail = (action,) if action else ()
    return [
        Route(method, ("v2", "models", "{name}", *tail), handler),
        Route(method, ("v2", "models", "{name}", "versions", "{version}", *tail), handler),
    ]


ROUTES = [  # first match wins: /v2/models/stats is the statistics of every model, not a model named "stats"
    Route("GET", ("v2",), RestApp.server_metadata),
    Route("GET", ("v2", "health", "live"), RestApp.live),
    Route("GET", ("v2", "health", "ready"), RestApp.ready),
    Route("POST", ("v2", "repository", "index"), RestApp.repository_index),
    Route("POST", ("v1", "outcomes"), RestApp.report_outcomes),
    Route("GET", ("v2", "models", "stats"), RestApp.model_statistics),
    *_model_routes("POST", "infer", RestApp.infer),
    *_model_routes("GET", "", RestApp.model_metadata),
    *_model_routes("GET", "ready", RestApp.model_ready),
    *_model_routes("GET", "config", RestApp.model_config),
    *_model_routes("GET", "stats", RestApp.model_statistics),
]
_BY_LENGTH: dict[int, list[Route]] = {}
for _route in ROUTES:
    _BY_LENGTH.setdefault(len(_route.pattern), []).append(_route)


def match(path: str) -> list[tuple[Route, dict[str, str]]]:
    """The routes whose pattern matches the path, whatever their method, in ROUTES order, each with the {name}
    and {version} it captures; none: no such path."""
    parts = path.strip("/").split("/")
    found = []
    for route in _BY_LENGTH.get(len(parts), ()):
        captured = {}
        for segment, part in zip(route.pattern, parts, strict=True):
            if segment[0] == "{":
                captured[segment[1:-1]] = part
            elif segment != part:
                break
        else:
            found.append((route, captured))
    return found
