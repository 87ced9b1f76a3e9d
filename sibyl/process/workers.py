"""`sibyl serve --workers N`: N processes serve one port (SO_REUSEPORT), a parent restarts the ones that die.

Workers are started with the spawn method: gRPC's core must not be forked after it has started threads.
Each worker has its own registry, onnxruntime sessions (threads = cores / workers), feature cache and
prediction log spool (spool_dir/worker-<i>, so a restarted worker replays its own). Metrics are merged through
prometheus_client's multiprocess directory and served by the parent.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from sibyl.api import rest
from sibyl.config import Settings
from sibyl.process.banner import serving_line

log = logging.getLogger(__name__)
RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def worker_settings(settings: Settings, index: int) -> Settings:
    predlog = settings.predlog
    path = Path(predlog.path)
    return settings.model_copy(
        update={
            "metrics": settings.metrics.model_copy(update={"enabled": False}),
            "predlog": predlog.model_copy(
                update={
                    "path": str(path.with_name(f"{path.stem}.worker-{index}{path.suffix}")),
                    "spool_dir": str(Path(predlog.spool_dir) / f"worker-{index}"),
                }
            ),
        }
    )


def _worker_main(settings_json: str) -> None:
    import uvloop

    from sibyl.observability.logs import setup_logging
    from sibyl.process.serve import serve

    settings = Settings.model_validate_json(settings_json)
    setup_logging(settings.log_level, settings.log_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into one SIGTERM per worker
    uvloop.run(serve(settings))


class Supervisor:
    def __init__(self, settings: Settings) -> None:
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
        self.restarts: dict[int, int] = {}
        self.stopping = False

    def _start(self, index: int) -> None:
        worker = worker_settings(self.settings, index)
        proc = self.ctx.Process(
            target=_worker_main, args=(worker.model_dump_json(),), name=f"sibyl-worker-{index}", daemon=False
        )
        proc.start()
        self.procs[index] = proc

    def run(self) -> int:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or self.settings.metrics.multiprocess_dir
        own_dir = mp_dir is None
        mp_dir = mp_dir or tempfile.mkdtemp(prefix="sibyl-metrics-")
        shutil.rmtree(mp_dir, ignore_errors=True)  # stale files from a previous run would be counted
        os.makedirs(mp_dir, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp_dir  # inherited by spawned workers
        metrics_port = 0
        if self.settings.metrics.enabled:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=mp_dir)
            http, _ = start_http_server(self.settings.metrics.port, addr=self.settings.metrics.host, registry=registry)
            metrics_port = http.server_port
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for i in range(self.count):
            self._start(i)
        s = self.settings.server
        http = (self.http_host, self.settings.http.port) if self.serves_http else None
        print(serving_line(s.host, s.port, metrics_port, self.count, http), flush=True)
        try:
            self._supervise(mp_dir)
        finally:
            if own_dir:
                shutil.rmtree(mp_dir, ignore_errors=True)
        return 0

    def _on_signal(self, _signum: int, _frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            for proc in self.procs.values():
                if proc.pid and proc.is_alive():
                    os.kill(proc.pid, signal.SIGTERM)

    def _supervise(self, mp_dir: str) -> None:
        from prometheus_client import multiprocess

        while True:
            time.sleep(0.2)
            if self.stopping:
                deadline = time.monotonic() + self.settings.server.grace_s + 10
                for proc in self.procs.values():
                    proc.join(max(0.1, deadline - time.monotonic()))
                    if proc.is_alive():
                        log.error("worker %s did not stop in time; killing it", proc.pid)
                        proc.kill()
                return
            for index, proc in list(self.procs.items()):
                if proc.is_alive():
                    continue
                multiprocess.mark_process_dead(proc.pid, mp_dir)
                n = self.restarts.get(index, 0)
                self.restarts[index] = n + 1
                log.error("worker %d (pid %s) exited with %s; restarting", index, proc.pid, proc.exitcode)
                time.sleep(RESTART_BACKOFF_S[min(n, len(RESTART_BACKOFF_S) - 1)] if n else 0)
                if not self.stopping:
                    self._start(index)


def run_workers(settings: Settings) -> int:
    if sys.platform != "linux":
        log.warning("SO_REUSEPORT load sharing is Linux behaviour; other platforms may favour one worker")
    return Supervisor(settings).run()
