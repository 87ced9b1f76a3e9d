"""The gRPC server: v1 and KServe V2 servicers, health, reflection, auth and TLS on one port, plus /metrics and
the KServe V2 REST port (api/rest) on the same event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from sibyl.api import auth, drain, outcome_servicer, rest, tls, v2_servicer
from sibyl.api.outcomes import OutcomeIntake
from sibyl.api.v1_servicer import PredictionServicer, add_to_server
from sibyl.app import App
from sibyl.config import Settings
from sibyl.errors import ConfigError
from sibyl.observability.metrics import Metrics
from sibyl.observability.thread_cpu import ThreadCpuCollector
from sibyl.predlog.outcome_sink import build_outcome_sink
from sibyl.v1 import predict_pb2

log = logging.getLogger(__name__)
ANSWER_FLUSH_S = 0.05  # after the last call in flight returns, for gRPC to write its answer before the close
SERVICE_NAMES = (
    predict_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    v2_servicer.SERVICE,
    outcome_servicer.SERVICE,
)


class SibylServer:
    """start() returns once the port serves and every predictor is loaded; stop(grace) drains."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(_metrics_registry(settings))
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0  # 0: REST is off (disabled, or uvicorn/httptools not installed)
        self._grpc: grpc.aio.Server | None = None
        self._http: Any = None  # rest.server.HttpServer
        self._metrics_http: WSGIServer | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        # Security files first: a wrong certificate or tokens path fails start-up before any model loads.
        self._tokens = auth.token_set(s.security)
        self.tls = tls.certificate_files(s.security)
        self.app = await App.build(s, self.metrics)
        self.registry, self.service = self.app.registry, self.app.service
        # Outcomes (api/outcomes.py): only a server takes them, so the outcome log is built here, not in App.
        self.outcomes = OutcomeIntake(
            build_outcome_sink(s.predlog, self.metrics), self.metrics, s.predlog.outcomes_max_per_call
        )
        self.outcomes.start()
        if s.metrics.enabled:  # before gRPC: a taken port fails start-up before anything serves
            self._start_metrics_http()
        http_socket = self._bind_http()
        try:
            await self._start_grpc()
        except BaseException:
            if http_socket is not None:
                http_socket.close()
            raise
        if http_socket is not None:
            await self._start_http(http_socket)
        log.info(
            "sibyl serving",
            extra={
                "port": self.port,
                "http_port": self.http_port,
                "predictors": sorted(self.registry.snapshot.predictors),
            },
        )

    def _bind_http(self) -> socket.socket | None:
        h = self.settings.http
        if not h.enabled:
            return None
        if not rest.installed():
            log.warning(
                "KServe V2 REST is off: it needs %s (pip install %s); serving gRPC only",
                " and ".join(rest.STACK),
                " ".join(rest.STACK),
            )
            return None
        from sibyl.api.rest.server import bind

        return bind(h.host or self.settings.server.host, h.port, reuse_port=self.settings.server.workers != 1)

    async def _start_http(self, sock: socket.socket) -> None:
        from sibyl.api.rest.app import RestApp
        from sibyl.api.rest.server import HttpServer

        app = RestApp(self.service, self.settings.server.max_message_bytes, self._tokens, self.metrics)
        app.outcomes = self.outcomes
        files = None
        if self.tls is not None:
            ca = str(self.tls.client_ca) if self.tls.client_ca else None
            files = (str(self.tls.cert), str(self.tls.key), ca)
        self._http = HttpServer(app, sock, self.settings.http.keep_alive_s, files)
        await self._http.start()
        self.http_port = self._http.port

    async def _start_grpc(self) -> None:
        s = self.settings.server
        options = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 1 if s.workers != 1 else 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
        interceptors = [auth.TokenAuthInterceptor(self._tokens, self.metrics)] if self._tokens else []
        self._grpc = grpc.aio.server(options=options, interceptors=interceptors)
        add_to_server(PredictionServicer(self.service), self._grpc)
        v2_servicer.add_to_server(v2_servicer.KServeServicer(self.service), self._grpc)  # KServe V2, same port
        outcome_servicer.add_to_server(outcome_servicer.OutcomeServicer(self.service, self.outcomes), self._grpc)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc)
        try:
            address = f"{s.host}:{s.port}"
            if self.tls is None:
                self.port = self._grpc.add_insecure_port(address)
            else:
                self.port = self._grpc.add_secure_port(address, tls.server_credentials(self.tls))
        except RuntimeError:
            raise ConfigError(
                f"cannot listen on {s.host}:{s.port} (in use?); set SIBYL_SERVER__PORT or --port (0 picks a free one)"
            ) from None
        await self._grpc.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def _start_metrics_http(self) -> None:
        m = self.settings.metrics
        try:
            server, _thread = start_http_server(m.port, addr=m.host, registry=self.metrics.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {m.host}:{m.port}: {exc.strerror}; set SIBYL_METRICS__PORT or --metrics-port"
            ) from None
        self._metrics_http = server
        self.metrics_port = server.server_port

    async def stop(self, grace_s: float | None = None) -> None:
        """The drain (docs/deploy.md#graceful-shutdown): tell clients to move while still serving, then refuse
        new calls and let in-flight ones finish, close the gRPC connections, stop both ports, flush the log."""
        if self._grpc is None or self._stopped.is_set():
            return
        s = self.settings.server
        grace = s.grace_s if grace_s is None else grace_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + grace
        # 1. Not ready, still serving: clients that watch health (sibyl.client) and balancers stop sending here at
        #    once; a client that does not is still answered while resolvers drop this address.
        await self.health.enter_graceful_shutdown()
        self.service.leaving = True
        await asyncio.sleep(min(s.drain_s, grace))
        # 2. Refuse new calls (UNAVAILABLE: retried on another address) until the calls in flight are answered.
        self.service.draining = True
        waited = loop.time()
        while self.service.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(min(ANSWER_FLUSH_S, max(0.0, deadline - loop.time())))  # their answers reach the wire
        in_flight_left = self.service.in_flight
        # 3. Close every gRPC connection, then stop the server (api/drain.py: why not GOAWAY).
        listening, closed = drain.close_port(self.port)
        await self._grpc.stop(max(0.0, deadline - loop.time()))
        if self._http is not None:
            await self._http.stop(max(0.0, deadline - loop.time()))
        log.info(
            "sibyl drained",
            extra={
                "seconds": round(loop.time() - started, 3),
                "refusing_s": round(loop.time() - waited, 3),
                "in_flight_left": in_flight_left,
                "connections_closed": closed,
                "listening_closed": listening,
                "refused": self.metrics.registry.get_sample_value("sibyl_rejected_total", {"reason": "draining"}),
            },
        )
        await asyncio.to_thread(self.outcomes.close, max(grace, 5.0))
        await self.app.close(grace)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        self._stopped.set()
        log.info("sibyl stopped")

    async def wait(self) -> None:
        await self._stopped.wait()


def _metrics_registry(settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry()
    if settings.metrics.multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from sibyl.observability.multiprocess import LiveCollector

        LiveCollector(registry)  # leaves out series of unloaded versions
    else:
        # Per-process series: one process, so they are the server's (prometheus_client leaves them out of
        # multiprocess mode for the same reason). process_*: CPU, memory, file descriptors, start time.
        ProcessCollector(registry=registry)
        ThreadCpuCollector(registry)
    return registry
