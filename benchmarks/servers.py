"""Servers under test, each started as a subprocess: sibyl (with real Redis / Kafka when a scenario needs
them) and the gRPC echo baseline."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from benchmarks.process import ServerProcess
from benchmarks.redis_fill import load_features

TOPIC = "sibyl.predictions"


def echo_server(rows: int = 1) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "benchmarks.echo_server", "--rows", str(rows)], name="echo")


def sibyl_env(store: Path, workers: int) -> dict[str, str]:
    return {
        "SIBYL_MODEL_STORE__URL": f"file://{store}",
        "SIBYL_SERVER__WORKERS": str(workers),
        "SIBYL_FEATURES__BACKEND": "none",
        "SIBYL_PREDLOG__SINK": "none",
        "SIBYL_METRICS__PORT": "0",
        "SIBYL_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def sibyl_server(group: str, store: Path, workers: int = 1) -> Iterator[ServerProcess]:
    """`sibyl serve --port 0` for a scenario group: "plain", "redis" or "redis-kafka"."""
    from tests.support.servers import KafkaBroker, RedisServer, create_topic

    env = sibyl_env(store, workers)
    with contextlib.ExitStack() as stack:
        if group in ("redis", "redis-kafka"):
            redis = stack.enter_context(RedisServer())
            load_features(redis.url)
            env |= {"SIBYL_FEATURES__BACKEND": "redis", "SIBYL_FEATURES__URL": redis.url}
            # The in-process cache would hide Redis after the first call: benchmark the fetch itself.
            env["SIBYL_FEATURES__CACHE_TTL_S"] = "0"
        if group == "redis-kafka":
            kafka = stack.enter_context(KafkaBroker())
            create_topic(kafka.bootstrap, TOPIC)
            env |= {"SIBYL_PREDLOG__SINK": "kafka", "SIBYL_PREDLOG__KAFKA_BOOTSTRAP": kafka.bootstrap}
            env["SIBYL_PREDLOG__TOPIC"] = TOPIC
        command = [sys.executable, "-m", "sibyl", "serve", "--port", "0", "--metrics-port", "0"]
        server = stack.enter_context(ServerProcess(command, env, name=f"sibyl-{group}"))
        yield server
