"""uvicorn (with httptools) serving the REST app on the event loop the gRPC server runs on: one process, one
loop, one PredictionService. Chosen by measurement (docs/design.md, "KServe V2 REST").

The socket is bound by `bind()` before anything serves, so a taken port fails start-up at once, and with
several workers each binds the same port with SO_REUSEPORT like the gRPC port. Each connection is uvicorn's
httptools protocol within api.rest.connection's limits (header size, count and read time, pipelining).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn

from sibyl.api.rest.app import RestApp
from sibyl.api.rest.connection import BoundedHttpProtocol, ConnectionLimits
from sibyl.errors import ConfigError

START_TIMEOUT_S = 10.0


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve KServe V2 REST on {host}:{port}: {exc.strerror}; set SIBYL_HTTP__PORT or --http-port "
            "(0 picks a free one), or SIBYL_HTTP__ENABLED=false"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class HttpServer:
    """start() returns once the port accepts connections; stop(timeout) closes it and finishes open requests."""

    def __init__(
        self,
        app: RestApp,
        sock: socket.socket,
        keep_alive_s: float,
        tls: tuple[str, str, str | None] | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        options: dict[str, Any] = {}
        if tls is not None:
            cert, key, client_ca = tls
            options = {"ssl_certfile": cert, "ssl_keyfile": key}
            if client_ca:
                options |= {"ssl_ca_certs": client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        protocol = functools.partial(BoundedHttpProtocol, limits=limits or ConnectionLimits(), refused=app.refused)
        config = uvicorn.Config(
            app,
            http=protocol,  # type: ignore[arg-type]  # a factory of the protocol, which is all uvicorn calls it as
            loop="none",  # the running uvloop loop: the gRPC server's
            lifespan="off",
            interface="asgi3",
            access_log=False,
            log_config=None,  # our JSON logging; uvicorn's loggers propagate to it
            log_level="warning",
            server_header=False,
            timeout_keep_alive=keep_alive_s,  # type: ignore[arg-type]  # annotated int; any seconds work (call_later)
            timeout_graceful_shutdown=None,
            **options,
        )
        self._server = _InLoopServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not self._server.started and not self._task.done() and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if not self._server.started:
            if self._task.done() and self._task.exception() is not None:
                raise ConfigError(f"KServe V2 REST server failed to start: {self._task.exception()}")
            raise ConfigError(f"KServe V2 REST server did not start within {START_TIMEOUT_S:g} s")

    async def stop(self, timeout_s: float) -> None:
        """Stop accepting, let open requests finish (up to timeout_s), then close every connection."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), max(timeout_s, 0.2))
        except TimeoutError:
            self._server.force_exit = True
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 1.0)
        self._task = None


class _InLoopServer(uvicorn.Server):
    """uvicorn.Server without its signal handlers: the process's own (process/serve.py) drain both ports."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # the same, for uvicorn before 0.29's capture_signals
        return None
