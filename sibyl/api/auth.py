"""Optional bearer-token auth: a grpc.aio interceptor; health checks and reflection stay open.

Clients send `authorization: Bearer <token>`. Tokens come from settings and/or a file (one per line, `#`
comments), which is re-read when it changes so tokens rotate without a restart. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from sibyl.api.status import WORKER_METADATA
from sibyl.config import SecuritySettings
from sibyl.errors import ConfigError
from sibyl.observability.metrics import Metrics

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only
OPEN_PREFIXES = (  # probes and tooling must work without a token
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
SCHEME = "bearer "


class TokenSet:
    """The accepted tokens; with a file, re-read when its stat changes (checked at most every check_s)."""

    def __init__(self, tokens: Iterable[str] = (), path: Path | None = None, check_s: float = 1.0) -> None:
        self.fixed = [t.encode() for t in tokens if t]
        self.path, self.check_s = path, check_s
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._from_file: list[bytes] = []
        if path is not None:
            try:
                self._reload()
            except OSError as exc:
                raise ConfigError(f"cannot read security.tokens_file {path}: {exc.strerror}") from None
        if not self.tokens():
            raise ConfigError("token auth is on but no token is set: fill security.tokens or security.tokens_file")

    def tokens(self) -> list[bytes]:
        return self.fixed + self._from_file

    def _reload(self) -> None:
        assert self.path is not None
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        lines = self.path.read_text().splitlines()
        self._from_file = [t.encode() for line in lines if (t := line.strip()) and not t.startswith("#")]
        self._stamp = stamp
        log.info("bearer tokens loaded", extra={"path": str(self.path), "tokens": len(self._from_file)})

    def refresh(self) -> None:
        if self.path is None or time.monotonic() < self._next_check:
            return
        with self._lock:
            self._next_check = time.monotonic() + self.check_s
            try:
                self._reload()
            except OSError as exc:  # being rewritten or moved: keep the tokens we have
                log.warning("cannot re-read tokens file %s (%s); keeping the current tokens", self.path, exc.strerror)

    def accepts(self, presented: bytes) -> bool:
        self.refresh()
        ok = False
        for token in self.tokens():  # no early exit: time does not tell which token matched
            ok |= hmac.compare_digest(presented, token)
        return ok


def token_set(security: SecuritySettings) -> TokenSet | None:
    if not security.tokens and not security.tokens_file:
        return None
    return TokenSet(security.tokens, Path(security.tokens_file) if security.tokens_file else None)


def _bearer(metadata: Iterable[Any] | None) -> bytes | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            if text[: len(SCHEME)].lower() == SCHEME:
                return text[len(SCHEME) :].strip().encode()
            return None
    return None


def _denier(handler: Handler, message: str) -> Handler:
    """A handler of the same shape as the real one that only refuses: the request is never read."""

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message, WORKER_METADATA)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message, WORKER_METADATA)
        yield  # pragma: no cover - makes this an async generator

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, des, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, des, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, des, ser)
    return grpc.stream_stream_rpc_method_handler(streaming, des, ser)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenSet, metrics: Metrics | None = None) -> None:
        self.tokens = tokens
        self._rejected = metrics.rejected.labels("unauthenticated") if metrics else None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        presented = _bearer(handler_call_details.invocation_metadata)
        if presented is not None and self.tokens.accepts(presented):
            return handler
        if self._rejected is not None:
            self._rejected.inc()
        what = "no bearer token" if presented is None else "bearer token not accepted"
        return _denier(handler, f"{what}: send metadata 'authorization: Bearer <token>'")
