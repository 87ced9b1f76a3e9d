"""A real server binary run as a child process on a free loopback port, in its own temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from sibyl.process.workers import free_port as kernel_port

LOOPBACK = "127.0.0.1"


class MissingBinaryError(RuntimeError):
    """A server binary is not installed; the message says what to install."""

    def __init__(self, binary: str, hint: str) -> None:
        super().__init__(f"{binary} not found; install it with: {hint}")
        self.binary = binary
        self.hint = hint


def free_port(also_free: Callable[[int], bool] | None = None) -> int:
    """A port the kernel just handed out on 127.0.0.1 (and, if given, for which `also_free(port)` holds)."""
    for _ in range(100):
        port = kernel_port(LOOPBACK)
        if also_free is None or also_free(port):
            return port
    raise RuntimeError("no free port found on 127.0.0.1 after 100 tries")


def port_is_free(port: int) -> bool:
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def find_binary(name: str, hint: str, candidates: Iterable[Path] = ()) -> str:
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/bin")
    if found is None:
        raise MissingBinaryError(name, hint)
    return found


def scrubbed_env(drop: Iterable[str]) -> dict[str, str]:
    """This process's env minus variables that would redirect the server (and any proxy settings)."""
    dropped = {*drop, "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"}
    return {key: value for key, value in os.environ.items() if key not in dropped}


class ManagedProcess:
    """Base for one child server. Subclasses give `_command()` and `_is_ready()`.

    `start()` returns once the server answers; `stop()` then `start()` again reuses the same port and dir,
    which is what fault-injection tests need.
    """

    label = "server"
    start_timeout_s = 15.0
    drop_env: tuple[str, ...] = ()

    def __init__(self, port: int | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"sibyl-{self.label}-")
        self.dir = Path(self._tmp.name)
        self.port = port if port is not None else self._pick_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    def _pick_port(self) -> int:
        return free_port()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.label}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id (for SIGSTOP/SIGCONT); it must be running."""
        assert self._proc is not None, f"{self.label} not running"
        return self._proc.pid

    def start(self) -> Self:
        if self.running:
            return self
        # A just-freed port can be taken by someone else before we bind it: on the first start only, retry
        # on a new port; later starts must keep the port the client already knows.
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
                break
            except _EarlyExit:
                if attempt == attempts - 1:
                    raise RuntimeError(f"{self.label} exited at start-up: {self._log_tail()}") from None
                self.port = self._pick_port()
        self._started_once = True
        return self

    def _spawn_and_wait(self) -> None:
        command = self._command()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                cwd=self.dir,
                env=scrubbed_env(self.drop_env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the server directly
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise _EarlyExit
            if self._is_ready():
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.label} not ready after {self.start_timeout_s:.0f} s: {self._log_tail()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within timeout_s."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout_s)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the crash a fault test wants, no shutdown work."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def _log_tail(self, chars: int = 800) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-chars:].strip() or "(empty log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _EarlyExit(Exception):
    pass
