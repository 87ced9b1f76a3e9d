"""Launchers for real servers on free 127.0.0.1 ports, for tests, benchmarks and manual runs.

Each is a context manager with `start()` / `stop()`; `start()` after `stop()` comes back on the same port.

    python -m tests.support.servers redis|redis-cluster|kafka|s3

starts one and prints its address until Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from tests.support.kafka_broker import DurableKafkaBroker, KafkaBroker, create_topic
from tests.support.process import MissingBinaryError, free_port
from tests.support.prometheus_server import PrometheusServer, promtool_path
from tests.support.redis_servers import RedisCluster, RedisServer
from tests.support.s3_server import S3Server, make_bucket

__all__ = [
    "DurableKafkaBroker",
    "KafkaBroker",
    "MissingBinaryError",
    "PrometheusServer",
    "RedisCluster",
    "RedisServer",
    "S3Server",
    "create_topic",
    "free_port",
    "make_bucket",
    "promtool_path",
]

KINDS = ("redis", "redis-cluster", "kafka", "s3")


def _make(kind: str) -> RedisServer | RedisCluster | KafkaBroker | S3Server:
    factories = {"redis": RedisServer, "redis-cluster": RedisCluster, "kafka": KafkaBroker, "s3": S3Server}
    return factories[kind]()


def _address(server: RedisServer | RedisCluster | KafkaBroker | S3Server) -> str:
    if isinstance(server, RedisCluster):
        return " ".join(f"{host}:{port}" for host, port in server.startup_nodes)
    if isinstance(server, RedisServer):
        return server.url
    if isinstance(server, KafkaBroker):
        return server.bootstrap
    return server.endpoint_url


def _serve(kind: str) -> None:
    with _make(kind) as server:
        print(f"{kind} ready at {_address(server)}  (Ctrl-C to stop)", flush=True)
        signal.pause()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in KINDS:
        print(f"usage: python -m tests.support.servers {{{'|'.join(KINDS)}}}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _serve(args[0])
    except RuntimeError as exc:  # includes MissingBinaryError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
