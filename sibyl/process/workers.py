"""`sibyl serve --workers N`: N processes serve one port (SO_REUSEPORT), a parent restarts the ones that die.

Workers are started with the spawn method: gRPC's core must not be forked after it has started threads.
Each worker has its own registry, onnxruntime sessions (threads = cores / workers), feature cache and
prediction log spool (spool_dir/worker-<i>, so a restarted worker replays its own; segments a change of N left
in other folders are moved to one that replays them before any worker starts: process/spools.py). Metrics are
merged through prometheus_client's multiprocess directory and served by the parent: a directory it creates
is removed at exit; one the user gives (PROMETHEUS_MULTIPROC_DIR, metrics.multiprocess_dir) must hold nothing
but stale prometheus files of dead processes, and only the *.db files are ever deleted from it.

A worker gets SIGTERM when the parent dies, even by SIGKILL (Linux PR_SET_PDEATHSIG), so no orphan keeps the
port. A worker that dies is restarted with backoff (0, 0.5, 1, 2, 5, 10 s); one that had run for
`healthy_after_s` starts the backoff afresh.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sibyl.api import rest
from sibyl.config import Settings
from sibyl.errors import ConfigError
from sibyl.process.banner import serving_line
from sibyl.process.spools import adopt_orphans

log = logging.getLogger(__name__)
RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)  # before the 2nd, 3rd, ... restart in a row; the 1st is immediate
HEALTHY_AFTER_S = 60.0  # a worker that ran this long was healthy: its next restart is immediate again
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PROMETHEUS_FILE = re.compile(r"^(?:counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db$")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def worker_settings(settings: Settings, index: int) -> Settings:
    predlog = settings.predlog
    path = Path(predlog.path)
    outcomes = Path(predlog.outcomes_path)  # each worker its own outcome file too (beside its log, when relative)
    return settings.model_copy(
        update={
            "metrics": settings.metrics.model_copy(update={"enabled": False}),
            "predlog": predlog.model_copy(
                update={
                    "path": str(path.with_name(f"{path.stem}.worker-{index}{path.suffix}")),
                    "outcomes_path": str(outcomes.with_name(f"{outcomes.stem}.worker-{index}{outcomes.suffix}")),
                    "spool_dir": str(Path(predlog.spool_dir) / f"worker-{index}"),
                }
            ),
        }
    )


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; exit at once if it already has.

    SIGTERM, not SIGKILL: the worker drains and flushes its log, as on any other shutdown. False where there is
    no prctl (not Linux): there a SIGKILLed supervisor leaves its workers running.
    """
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return False
    if os.getppid() != parent_pid:  # the parent died before prctl: the signal will never come
        os._exit(0)
    return True


def _worker_main(settings_json: str, parent_pid: int, serving: Any) -> None:
    """serving: a multiprocessing Event, set once this worker answers on the port."""
    die_with_parent(parent_pid)
    import uvloop

    from sibyl.observability.logs import setup_logging

    settings = Settings.model_validate_json(settings_json)
    setup_logging(settings.log_level, settings.log_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into one SIGTERM per worker
    uvloop.run(_serve_and_tell(settings, serving))


async def _serve_and_tell(settings: Settings, serving: Any) -> None:
    import asyncio

    from sibyl.process.serve import serve

    ready = asyncio.Event()

    async def tell() -> None:
        await ready.wait()
        serving.set()

    told = asyncio.create_task(tell())
    try:
        await serve(settings, ready, announce=False)
    finally:
        told.cancel()


def metrics_dir(given: str | None) -> tuple[Path, bool]:
    """(directory, created here). A given one is checked, not wiped: only stale prometheus files of dead
    processes may be in it, and those are deleted (they would be counted); anything else is a clear error."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="sibyl-metrics-")), True
    path = Path(given)
    path.mkdir(parents=True, exist_ok=True)
    stale, foreign = [], []
    for entry in sorted(path.iterdir()):
        match = PROMETHEUS_FILE.match(entry.name)
        if match is None or not entry.is_file():
            foreign.append(entry.name)
        elif _alive(int(match.group(1))):
            raise ConfigError(
                f"metrics multiprocess dir {path} is in use by running process {match.group(1)} ({entry.name}); "
                "give each server a directory of its own (PROMETHEUS_MULTIPROC_DIR or SIBYL_METRICS__MULTIPROCESS_DIR)"
            )
        else:
            stale.append(entry)
    if foreign:
        raise ConfigError(
            f"metrics multiprocess dir {path} holds files that are not prometheus multiprocess files "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); sibyl would count or delete them: "
            "give an empty directory, or unset PROMETHEUS_MULTIPROC_DIR / SIBYL_METRICS__MULTIPROCESS_DIR"
        )
    for entry in stale:
        entry.unlink(missing_ok=True)
    return path, False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Supervisor:
    def __init__(self, settings: Settings, healthy_after_s: float = HEALTHY_AFTER_S) -> None:
        count = settings.server.workers or os.cpu_count() or 1
        server = settings.server
        port = server.port or free_port(server.host)
        http = settings.http
        self.http_host = http.host or server.host
        self.serves_http = http.enabled and rest.installed()  # else each worker logs why REST is off
        http_port = (http.port or free_port(self.http_host)) if self.serves_http else http.port
        self.settings = settings.model_copy(
            update={
                "server": server.model_copy(update={"port": port, "workers": count}),
                "http": http.model_copy(update={"port": http_port}),
            }
        )
        self.count = count
        self.ctx = mp.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.restarts: dict[int, int] = {}  # restarts in a row, per worker index
        self.started_at: dict[int, float] = {}
        self.due: dict[int, float] = {}  # worker index -> when its restart is due (backoff without blocking)
        self.pids: set[int] = set()  # every worker ever started: whose metrics files are ours
        self.healthy_after_s = healthy_after_s
        self.serving: dict[int, Any] = {}  # worker index -> multiprocessing Event, set once it serves
        self.stopping = False

    def _start(self, index: int) -> None:
        worker = worker_settings(self.settings, index)
        self.serving[index] = self.ctx.Event()
        proc = self.ctx.Process(
            target=_worker_main,
            args=(worker.model_dump_json(), os.getpid(), self.serving[index]),
            name=f"sibyl-worker-{index}",
            daemon=False,
        )
        proc.start()
        self.procs[index] = proc
        self.started_at[index] = time.monotonic()
        if proc.pid is not None:
            self.pids.add(proc.pid)

    def run(self) -> int:
        from prometheus_client import CollectorRegistry, start_http_server

        from sibyl.observability.multiprocess import LiveCollector

        given = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or self.settings.metrics.multiprocess_dir
        path, own_dir = metrics_dir(given)
        mp_dir = str(path)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp_dir  # inherited by spawned workers
        adopt_orphans(Path(self.settings.predlog.spool_dir), self.count)  # before any worker opens its spool
        metrics_port = 0
        if self.settings.metrics.enabled:
            registry = CollectorRegistry()
            LiveCollector(registry, path=mp_dir)  # leaves out series of unloaded versions (multiprocess.py)
            metrics_http, _ = start_http_server(
                self.settings.metrics.port, addr=self.settings.metrics.host, registry=registry
            )
            metrics_port = metrics_http.server_port
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for i in range(self.count):
            self._start(i)
        try:
            failed = self._wait_serving()
            if failed is None:  # the line says the port answers, as for one process: every worker serves
                s = self.settings.server
                http = (self.http_host, self.settings.http.port) if self.serves_http else None
                print(serving_line(s.host, s.port, metrics_port, self.count, http), flush=True)
                self._supervise(mp_dir)
        finally:
            if own_dir:
                shutil.rmtree(mp_dir, ignore_errors=True)
            else:  # a directory the user gave: only the files of our own processes go
                for entry in path.glob("*.db"):
                    match = PROMETHEUS_FILE.match(entry.name)
                    if match is not None and int(match.group(1)) in self.pids | {os.getpid()}:
                        entry.unlink(missing_ok=True)
        if failed is not None:
            log.error("worker %d exited with %s while starting; stopping (its error is above)", *failed)
            return 1
        return 0

    def _wait_serving(self) -> tuple[int, int | None] | None:
        """Until every first worker serves; (index, exit code) of one that died first (the others are stopped:
        a config that cannot serve fails `sibyl serve` as it does for one process, not a restart loop)."""
        while not self.stopping and not all(event.is_set() for event in self.serving.values()):
            for index, proc in self.procs.items():
                if not proc.is_alive() and not self.serving[index].is_set():
                    self._on_signal(signal.SIGTERM, None)
                    self._join_all()
                    return index, proc.exitcode
            time.sleep(0.05)
        if self.stopping:
            self._join_all()
        return None

    def _on_signal(self, _signum: int, _frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            for proc in self.procs.values():
                if proc.pid and proc.is_alive():
                    os.kill(proc.pid, signal.SIGTERM)

    def _join_all(self) -> None:
        deadline = time.monotonic() + self.settings.server.grace_s + 10
        for proc in self.procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop in time; killing it", proc.pid)
                proc.kill()

    def _supervise(self, mp_dir: str) -> None:
        from prometheus_client import multiprocess

        while True:
            time.sleep(0.2)
            if self.stopping:
                self._join_all()
                return
            now = time.monotonic()
            for index, proc in list(self.procs.items()):
                if index in self.due or proc.is_alive():
                    continue
                multiprocess.mark_process_dead(proc.pid, mp_dir)
                uptime = now - self.started_at.get(index, now)
                if uptime >= self.healthy_after_s:
                    self.restarts[index] = 0  # it had been running fine: this is a new problem, not a crash loop
                n = self.restarts.get(index, 0) + 1
                self.restarts[index] = n
                delay = 0.0 if n == 1 else RESTART_BACKOFF_S[min(n - 2, len(RESTART_BACKOFF_S) - 1)]
                log.error(
                    "worker %d (pid %s) exited with %s after %.1f s; restart %d in a row, in %.1f s",
                    index, proc.pid, proc.exitcode, uptime, n, delay,
                )  # fmt: skip
                self.due[index] = now + delay
            for index, when in list(self.due.items()):
                if when <= now and not self.stopping:
                    del self.due[index]
                    self._start(index)


def run_workers(settings: Settings) -> int:
    if sys.platform != "linux":
        log.warning("SO_REUSEPORT load sharing is Linux behaviour; other platforms may favour one worker")
    return Supervisor(settings).run()
