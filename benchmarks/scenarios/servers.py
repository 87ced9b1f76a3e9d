"""Servers under test, each started as a subprocess (its own interpreter: no GIL shared with the load
generator): sibyl (with real Redis / Kafka when a scenario needs them) and the gRPC echo baseline.

Both bind port 0 and print a line "... serving on HOST:PORT"; a server is ready once that line is in its log
and grpc.health.v1 says SERVING there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.scenarios.redis_fill import load_features
from sibyl.process.banner import parse_serving_line
from tests.support.process import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPIC = "sibyl.predictions"


def is_serving(target: str) -> bool:
    """One grpc.health.v1 Check: True when the server answers SERVING."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class ServerProcess(ManagedProcess):
    """`with ServerProcess([...], env={...}) as s: s.target` -> "HOST:P" once healthy (P as the server printed it)."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str] | None = None, name: str = "server", timeout_s: float = 60
    ) -> None:
        self.label = name
        self.start_timeout_s = timeout_s
        # The child runs in a temp dir: make this checkout's packages (sibyl, benchmarks) importable there.
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        assignments = [f"{key}={value}" for key, value in {"PYTHONPATH": path, **(env or {})}.items()]
        self.command = ["env", *assignments, *command]
        self.target = ""
        self.metrics_port = 0  # /metrics on 127.0.0.1, as the serving line says; 0: none (echo, peers)
        self.http_port = 0  # the KServe V2 REST port the serving line names; 0: none (REST off, echo, peers)
        self._log_from = 0
        super().__init__(port=0)  # the server picks its port and prints it

    def _pick_port(self) -> int:
        return 0

    def _command(self) -> list[str]:
        self.target = ""
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0  # this start's lines only
        return self.command

    def _is_ready(self) -> bool:
        if not self.target:
            with self.log_path.open(errors="replace") as log:
                log.seek(self._log_from)
                serving = parse_serving_line(log.read())
            if serving is None:
                return False
            self.target = f"{serving.host}:{serving.port}"
            self.metrics_port = serving.metrics_port
            self.http_port = serving.http_port
        return is_serving(self.target)

    @property
    def pid(self) -> int | None:
        """The server's process (with `env`, the same pid): the root of the tree whose CPU is read."""
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)


def echo_server() -> ServerProcess:
    command = [sys.executable, "-m", "benchmarks.scenarios.echo_server"]
    return ServerProcess(command, name="echo")


def sibyl_env(store: Path, workers: int) -> dict[str, str]:
    """Default settings, as a user gets them (file log on, with feature values; memory feature store), but for
    the model store, the worker count and free ports. The file log lands in the server's own temp dir."""
    return {
        "SIBYL_MODEL_STORE__URL": f"file://{store}",
        "SIBYL_SERVER__WORKERS": str(workers),
        "SIBYL_METRICS__PORT": "0",
    }


@contextlib.contextmanager
def sibyl_server(
    group: str, store: Path, workers: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """`sibyl serve --port 0` for a group: "plain", "redis", "kafka" (the log to a real Kafka-protocol broker) or
    "redis-kafka"; `env` overrides settings
    (tuned rows, e.g. SIBYL_PREDLOG__SINK=none)."""
    from tests.support.servers import KafkaBroker, RedisServer, create_topic

    overrides = dict(env or {})
    env = sibyl_env(store, workers)
    with contextlib.ExitStack() as stack:
        if group in ("redis", "redis-kafka"):
            redis = stack.enter_context(RedisServer())
            load_features(redis.url)
            env |= {"SIBYL_FEATURES__BACKEND": "redis", "SIBYL_FEATURES__URL": redis.url}
            # The in-process cache would hide Redis after the first call: benchmark the fetch itself.
            env["SIBYL_FEATURES__CACHE_TTL_S"] = "0"
        if group in ("redis-kafka", "kafka"):
            kafka = stack.enter_context(KafkaBroker())
            create_topic(kafka.bootstrap, TOPIC)
            env |= {"SIBYL_PREDLOG__SINK": "kafka", "SIBYL_PREDLOG__KAFKA_BOOTSTRAP": kafka.bootstrap}
            env["SIBYL_PREDLOG__TOPIC"] = TOPIC
        env |= overrides
        command = [sys.executable, "-m", "sibyl", "serve", "--port", "0", "--metrics-port", "0", "--http-port", "0"]
        server = stack.enter_context(ServerProcess(command, env, name=f"sibyl-{group}"))
        yield server
