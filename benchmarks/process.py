"""A server under test as a child process: its own interpreter (no shared GIL with the load generator).

The child prints a line "... serving on HOST:PORT"; we then wait until grpc.health.v1 says SERVING.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVING_LINE = re.compile(r"serving on (\S+):(\d+)")


class ServerError(RuntimeError):
    """The server under test did not start; the message carries the end of its log."""


def wait_serving(target: str, timeout_s: float = 30.0, service: str = "") -> None:
    """Poll the gRPC health service until it answers SERVING (bounded by timeout_s)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                last = exc.code().name  # type: ignore[attr-defined]
            time.sleep(0.05)
    raise ServerError(f"{target} not SERVING after {timeout_s:.0f} s (last: {last})")


class ServerProcess:
    """`with ServerProcess([...], env={...}) as s: s.target` -> "127.0.0.1:P" once healthy."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str] | None = None, name: str = "server", timeout_s: float = 60
    ) -> None:
        self.command = list(command)
        # The child runs in a temp dir: make this checkout's packages (sibyl, benchmarks) importable there.
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "PYTHONPATH": path, **(env or {})}
        self.name = name
        self.timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-{name}-")
        self.dir = Path(self._tmp.name)
        self.log_path = self.dir / "server.log"
        self.target = ""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        log = self.log_path.open("w")
        self._proc = subprocess.Popen(
            self.command,
            cwd=self.dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        found: list[str] = []
        threading.Thread(target=self._read_stdout, args=(found,), daemon=True).start()
        deadline = time.monotonic() + self.timeout_s
        while not found and time.monotonic() < deadline and self._proc.poll() is None:
            time.sleep(0.02)
        if not found:
            self.stop()
            raise ServerError(f"{self.name} did not start: {self.log_tail()}")
        self.target = found[0]
        try:
            wait_serving(self.target, max(1.0, deadline - time.monotonic()))
        except ServerError:
            self.stop()
            raise
        return self

    def _read_stdout(self, found: list[str]) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with (self.dir / "stdout.log").open("w") as out:
            for line in self._proc.stdout:  # ends when the child exits
                out.write(line)
                out.flush()
                match = SERVING_LINE.search(line)
                if match and not found:
                    found.append(f"{match.group(1)}:{match.group(2)}")

    def log_tail(self, chars: int = 1500) -> str:
        text = ""
        for path in (self.log_path, self.dir / "stdout.log"):
            if path.exists():
                text += path.read_text(errors="replace")
        return text[-chars:].strip() or "(empty log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        self._tmp.cleanup()
