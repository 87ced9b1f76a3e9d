"""A real sibyl server in this process (or a `sibyl serve` subprocess), on a free port, over a temp model store
built with tests/support/onnxgen; and a bare threaded gRPC server for stand-in servicers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import grpc

from sibyl.api.server import SibylServer
from sibyl.config import load_settings
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore
from sibyl.process.banner import Serving, parse_serving_line
from tests.support.onnxgen import publish_logistic

PRIMARY_WEIGHTS = [0.5, -0.02, 0.3, 1.0, -1.0]  # amount, age, rating, emb[0], emb[1]
SHADOW_WEIGHTS = [0.1, 0.01, -0.2, 0.5, 0.5]
# Entity features for the memory backend: consumer c1 and store s1 (see write_features, features_on).
CONSUMERS = [{"entity": "consumer_id", "id": "c1", "features": {"age": 40.0, "emb": [0.5, -0.5]}}]
STORES = [{"entity": "store_id", "id": "s1", "features": {"rating": 4.5}}]


REPO_ROOT = Path(__file__).resolve().parents[2]


def publish_models(root: Path) -> Catalog:
    """Models m@1 (primary) and s@1 (shadow at sample 1.0) behind predictor 'p'."""
    catalog = Catalog(FileStore(root))
    publish_logistic(catalog, "m", "1", PRIMARY_WEIGHTS, bias=-0.5)
    publish_logistic(catalog, "s", "1", SHADOW_WEIGHTS)
    catalog.promote("p", "m@1")
    catalog.set_shadow("p", "s@1", 1.0)
    return catalog


def write_features(path: Path, entities: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entities))
    return path


def features_on(tmp_path: Path) -> dict[str, object]:
    """Feature settings for the memory backend over tmp_path/features.jsonl (see write_features)."""
    return {"backend": "memory", "memory_file": str(tmp_path / "features.jsonl")}


@asynccontextmanager
async def running_server(tmp_path: Path, store_url: str | None = None, **overrides: Any) -> AsyncIterator[SibylServer]:
    """overrides: nested settings, e.g. features={"backend": "none"}, predlog={"sink": "file", "path": ...}."""
    base: dict[str, Any] = {
        "server": {"port": 0, "drain_s": 0.0},
        "metrics": {"port": 0},
        "http": {"port": 0},
        "model_store": {"url": store_url or f"file://{tmp_path / 'store'}", "poll_interval_s": 0.2},
        "features": {"backend": "none"},
        "predlog": {"sink": "file", "path": str(tmp_path / "predictions.jsonl"), "spool_dir": str(tmp_path / "spool")},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    server = SibylServer(load_settings(**base))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(1.0)


def serve_subprocess(
    tmp_path: Path, *flags: str, log_to: Path | None = None, **env: str
) -> tuple[subprocess.Popen[str], int, int]:
    """`python -m sibyl serve --port 0 FLAGS` over publish_models(tmp_path/"store"), file log in tmp_path.

    env: extra SIBYL_* settings; log_to: a file for the server's stderr (else discarded). Returns (process, gRPC port, metrics port or 0) once it prints its serving line.
    """
    proc, serving = serve_subprocess_serving(tmp_path, *flags, log_to=log_to, **env)
    return proc, serving.port, serving.metrics_port


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a test `sibyl serve` over tmp_path/"store": no features, log and spool in tmp_path, REST on
    a free port, this checkout's code; extra: more SIBYL_* settings (they win)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIBYL_", "PROMETHEUS_"))}
    env.update(
        SIBYL_MODEL_STORE__URL=f"file://{tmp_path / 'store'}",
        SIBYL_FEATURES__BACKEND="none",
        SIBYL_PREDLOG__PATH=str(tmp_path / "predictions.jsonl"),
        SIBYL_PREDLOG__SPOOL_DIR=str(tmp_path / "spool"),
        SIBYL_SERVER__GRACE_S="3",
        SIBYL_HTTP__PORT="0",
        SIBYL_LOG_LEVEL="WARNING",
    )
    # The server runs this checkout's code, whatever copy of sibyl the interpreter has installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def serve_subprocess_serving(
    tmp_path: Path, *flags: str, log_to: Path | None = None, **env: str
) -> tuple[subprocess.Popen[str], Serving]:
    """serve_subprocess, returning every port of the serving line (REST on a free port unless env sets one)."""
    publish_models(tmp_path / "store")
    full_env = server_env(tmp_path, **env)
    command = [sys.executable, "-m", "sibyl", "serve", "--port", "0", *flags]
    stderr = log_to.open("ab") if log_to is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    finally:
        if log_to is not None:
            stderr.close()  # type: ignore[union-attr]
    assert proc.stdout is not None
    line = proc.stdout.readline()
    serving = parse_serving_line(line)
    if serving is None:
        proc.kill()
        raise AssertionError(f"sibyl serve did not start; first line: {line!r}")
    return proc, serving


@contextmanager
def threaded_grpc_server(register: Callable[[grpc.Server], object]) -> Iterator[int]:
    """A plain gRPC server (thread pool) on a free 127.0.0.1 port with what `register` adds; yields the port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)
