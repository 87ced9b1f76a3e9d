"""sibyl filling features from Feast's Redis layout vs Feast's own Python feature server (`feast serve`), same box,
same redis-server, same data: p50/p99 per request and CPU per request across the processes involved, at 1 and
100 entities.

python -m benchmarks.scenarios.feast_fill [--requests 500]

The data is what tests/features/feast_driver.py materializes with real feast 0.67 (driver_stats: 9 features of
every Feast numeric type and list, plus 100 extra drivers), in Feast's venv (tests/features/feast_env.py; built on
first use). sibyl side: the full fetcher (budget, breaker, metrics) without its cache, in this process; CPU is this
process's. Feast side: POST /get-online-features over HTTP (keep-alive) to `feast serve`; CPU is the server's plus
this client's. Not measured here: the model call behind either (MLServer for the Feast pipeline, sibyl's own
inference), which the issue's full comparison adds on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
from prometheus_client import CollectorRegistry

from sibyl.features import build_fetcher
from sibyl.features.feast_redis import FeastSettings
from sibyl.features.fetcher import Fetcher
from sibyl.features.settings import FeatureSettings
from sibyl.models.manifest import FeatureSpec
from sibyl.observability.metrics import Metrics
from tests.features.feast_env import ensure, run_feast
from tests.support.servers import RedisServer

FEATURES = {"conv_rate": 1, "acc_rate": 1, "trips": 1, "rank": 1, "active": 1, "emb": 4, "weights": 2, "hist": 3}
IDS = [2000 + i for i in range(100)]


def _specs() -> list[FeatureSpec]:
    out = []
    for name, dim in FEATURES.items():
        dtype = "float" if dim == 1 else ("int_list" if name == "hist" else "float_vector")
        out.append(FeatureSpec(name=f"driver_stats__{name}", entity="driver_id", dtype=dtype, dim=dim))  # type: ignore[arg-type]
    return out


def _tree(pid: int) -> list[int]:
    """A process and its descendants (feast serve runs its app in worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
    return found


def _cpu_s(pid: int) -> float:
    """utime + stime of a process tree, from /proc (Linux)."""
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _summary(label: str, ms: np.ndarray, cpu_ms: float) -> dict[str, Any]:
    p50, p99 = np.percentile(ms, [50, 99])
    return {"case": label, "p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3), "cpu_ms": round(cpu_ms, 3)}


async def _sibyl(url: str, rows: int, requests: int) -> dict[str, Any]:
    feast = FeastSettings(project="bench", entities=["driver_id=int64"])
    settings = FeatureSettings(backend="feast-redis", url=url, cache_ttl_s=0, budget_ms=1000, feast=feast)
    fetcher = cast(Fetcher, build_fetcher(settings, Metrics(CollectorRegistry())))
    specs = _specs()
    wanted = {("driver_id", str(i)): specs for i in IDS[:rows]}
    for _ in range(50):
        await fetcher.fetch(wanted)
    times = np.empty(requests)
    cpu = time.process_time()
    for i in range(requests):
        start = time.perf_counter()
        result = await fetcher.fetch(wanted, budget_s=1.0)
        times[i] = time.perf_counter() - start
        assert not result.degraded and len(result.values) == rows
    cpu_ms = (time.process_time() - cpu) * 1000 / requests
    await fetcher.close()
    return _summary(f"sibyl feast-redis, {rows} rows", times * 1000, cpu_ms)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _feast_serve(repo: Path, rows: int, requests: int) -> dict[str, Any]:
    port = _free_port()
    feast = ensure().parent / "feast"
    server = subprocess.Popen(
        [str(feast), "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({
            "features": [f"driver_stats:{n}" for n in FEATURES],
            "entities": {"driver_id": IDS[:rows]},
            "full_feature_names": True,
        })  # fmt: skip
        deadline = time.monotonic() + 120
        while True:  # importing feast and loading the registry take seconds
            try:
                conn.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                if answer.status == 200:
                    break
            except OSError:
                conn.close()
            if time.monotonic() > deadline:
                raise RuntimeError("feast serve did not answer within 120 s")
            time.sleep(0.5)
        for _ in range(50):
            conn.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
            conn.getresponse().read()
        times = np.empty(requests)
        cpu_server, cpu_client = _cpu_s(server.pid), time.process_time()
        for i in range(requests):
            start = time.perf_counter()
            conn.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
            answer = conn.getresponse()
            payload = answer.read()
            times[i] = time.perf_counter() - start
            assert answer.status == 200, payload[:200]
        cpu_s = _cpu_s(server.pid) - cpu_server + time.process_time() - cpu_client
        conn.close()
        return _summary(f"feast serve (HTTP), {rows} rows", times * 1000, cpu_s * 1000 / requests)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scenarios.feast_fill", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=500, help="timed requests per case (default 500)")
    args = parser.parse_args(argv)
    redis = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp) / "bench"
            address = redis.url.split("//")[1].split("/")[0]
            run_feast(
                repo, {"connection": address, "project": "bench", "version": 3, "extra_drivers": len(IDS), "reads": []}
            )
            results = []
            for rows in (1, 100):
                results.append(asyncio.run(_sibyl(redis.url, rows, args.requests)))
                results.append(_feast_serve(repo, rows, args.requests))
    finally:
        redis.close()
    for line in results:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
