"""A Feast user's prediction pipeline vs sibyl reading Feast's store: same box, same redis-server, same data,
same model; p50/p99 per prediction and CPU per prediction across every process involved, at 1 and 100 rows.

python -m benchmarks.peers.feast_pipeline [--requests 500] [--blocks 6] [--no-composite]

A peer comparison (it starts MLServer from benchmarks/peers), so it lives here, above the scenarios' servers.

- sibyl: `sibyl serve` (features.backend feast-redis, no cache) answers a gRPC Predict whose rows carry only the
  driver id; it reads Feast's Redis layout and scores. CPU: sibyl's process tree + the client. The same server
  also over KServe V2 REST (POST /v2/models/p/infer, the ids as a BYTES tensor) with http.client, the client
  library the composite uses for `feast serve`.
- the composite (what a Feast user runs today): the client POSTs /get-online-features to `feast serve` (Feast's
  Python feature server), builds the float32 matrix, and calls MLServer's V2 ModelInfer (benchmarks/peers, the
  same model.onnx through onnxruntime). CPU: both servers' process trees + the client.
- features only, for scale: sibyl's fetcher in this process vs `feast serve` alone.
- the floor, in the same turns: the same Predict to the echo server (benchmarks/scenarios/echo_server.py: a
  grpc.aio server that parses the request and answers at once), so a run shows what the gRPC transport alone
  costs in that phase of the box; the last line gives each p99 and CPU as a ratio of the composite's.

The data is what tests/features/feast_driver.py materializes with real feast 0.67 (driver_stats: 8 features
feeding 14 columns, 100 extra drivers), in Feast's venv (tests/features/feast_env.py); MLServer's venv comes from
benchmarks/peers/setup.py. Both sides' scores are checked equal before timing.
The pipelines' three cases (sibyl over gRPC, over REST, the composite) take turns, a share of the requests each,
`--blocks` times: the box's speed drifts over minutes, and a ratio of two cases' p99 should compare the same phases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from benchmarks.peers import setup as peers_setup
from benchmarks.peers.servers import MLServerPeer
from benchmarks.peers.v2 import MODEL_INFER, infer_request, scores
from benchmarks.scenarios.servers import ServerProcess, echo_server
from sibyl.features import build_fetcher
from sibyl.features.feast_redis import FeastSettings
from sibyl.features.fetcher import Fetcher
from sibyl.features.settings import FeatureSettings
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec
from sibyl.models.store import FileStore
from sibyl.observability.metrics import Metrics
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, PredictResponse
from tests.features.feast_env import ensure, run_feast
from tests.support.onnxgen import publish_logistic
from tests.support.servers import RedisServer

FEATURES = {"conv_rate": 1, "acc_rate": 1, "trips": 1, "rank": 1, "active": 1, "emb": 4, "weights": 2, "hist": 3}
IDS = [2000 + i for i in range(100)]
PREDICT = "/sibyl.v1.PredictionService/Predict"


def specs_of_driver_stats() -> list[FeatureSpec]:
    out = []
    for name, dim in FEATURES.items():
        dtype = "float" if dim == 1 else ("int_list" if name == "hist" else "float_vector")
        default = 0.0 if dim == 1 else (0.0,) * dim
        out.append(FeatureSpec(name=f"driver_stats__{name}", entity="driver_id", dtype=dtype, dim=dim, default=default))  # type: ignore[arg-type]
    return out


def _tree(pid: int) -> list[int]:
    """A process and its descendants (feast serve and MLServer run workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return found


def _cpu_s(pids: list[int]) -> float:
    """CPU of process trees, from /proc (Linux): each live member's own time and that of the children it reaped
    (feast serve's gunicorn recycles workers: a worker that exits takes its time to its parent's cutime)."""
    total = 0
    for member in (m for pid in pids for m in _tree(pid)):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime + cutime cstime: recycled workers stay counted
    return total / os.sysconf("SC_CLK_TCK")


def timed(label: str, call: Callable[[], object], requests: int, pids: list[int]) -> dict[str, Any]:
    """Warm-up, then `requests` calls one after another; CPU of `pids`' trees and of this process, per call."""
    return interleaved([(label, call, pids)], requests, blocks=1)[0]


Case = tuple[str, Callable[[], object], list[int]]  # label, one call, the pids whose trees serve it


def interleaved(cases: list[Case], requests: int, blocks: int) -> list[dict[str, Any]]:
    """Each case's `requests` calls in `blocks` turns, the cases one after another in each turn: every case sees the
    same phases of a shared box (its speed drifts by tens of percent over minutes, docs/features.md), so the ratio
    of two cases' p99 is not a ratio of two moments. Warm-up, then per case p50/p99/p99.9 and CPU per call."""
    for _, call, _ in cases:
        for _ in range(50):
            call()
    times = [np.empty(requests) for _ in cases]
    cpu_s = [0.0 for _ in cases]
    edges = np.linspace(0, requests, blocks + 1).astype(int)
    for start, end in itertools.pairwise(edges.tolist()):
        for i, (_, call, pids) in enumerate(cases):
            cpu_servers, cpu_client = _cpu_s(pids), time.process_time()
            for k in range(start, end):
                begin = time.perf_counter()
                call()
                times[i][k] = time.perf_counter() - begin
            cpu_s[i] += _cpu_s(pids) - cpu_servers + time.process_time() - cpu_client
    return [_summary(label, times[i], cpu_s[i] * 1000 / requests) for i, (label, _, _) in enumerate(cases)]


def _summary(label: str, times_s: np.ndarray, cpu_ms: float) -> dict[str, Any]:
    p50, p99, p999 = (round(float(q), 3) for q in np.percentile(times_s * 1000, [50, 99, 99.9]))
    return {"case": label, "p50_ms": p50, "p99_ms": p99, "p99.9_ms": p999, "cpu_ms": round(cpu_ms, 3)}


# ---- features only
async def _fetcher_case(url: str, rows: int, requests: int) -> dict[str, Any]:
    """The fetcher on this loop (no thread hop): time and CPU of this process only."""
    feast = FeastSettings(project="bench", entities=["driver_id=int64"])
    settings = FeatureSettings(backend="feast-redis", url=url, cache_ttl_s=0, budget_ms=1000, feast=feast)
    fetcher = cast(Fetcher, build_fetcher(settings, Metrics(CollectorRegistry())))
    specs = specs_of_driver_stats()
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
    return _summary(f"features: sibyl fetcher, {rows} rows", times, cpu_ms)


class FeastServer:
    """`feast serve` over the repo, on a free port; POST /get-online-features on one keep-alive connection."""

    def __init__(self, repo: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        command = [str(ensure().parent / "feast"), "serve", "-h", "127.0.0.1", "-p", str(self.port), "--no-access-log"]
        self.proc = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.reconnects = 0
        deadline = time.monotonic() + 120
        while True:  # importing feast and loading the registry take seconds
            try:
                self.features(IDS[:1])
                return
            except (OSError, http.client.HTTPException):
                self.conn.close()
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("feast serve did not answer within 120 s")
            time.sleep(0.5)

    def features(self, ids: list[int]) -> dict[str, list[Any]]:
        body = json.dumps({"features": [f"driver_stats:{n}" for n in FEATURES], "entities": {"driver_id": ids},
                           "full_feature_names": True})  # fmt: skip
        try:
            payload, answer = self._post(body)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # feast serve's gunicorn recycles a worker every ~1,000 requests by default (--max-requests): its
            # keep-alive connection closes, and a client reconnects as urllib3 would; the reconnect is timed.
            self.reconnects += 1
            self.conn.close()
            payload, answer = self._post(body)
        if answer.status != 200:
            raise RuntimeError(f"feast serve answered {answer.status}: {payload[:200]!r}")
        data = json.loads(payload)
        names = data["metadata"]["feature_names"]
        return {name: result["values"] for name, result in zip(names, data["results"], strict=True)}

    def _post(self, body: str) -> tuple[bytes, http.client.HTTPResponse]:
        self.conn.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
        answer = self.conn.getresponse()
        return answer.read(), answer

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


class SibylRest:
    """sibyl's KServe V2 REST infer with the rows' driver ids (a BYTES tensor), on one keep-alive connection."""

    def __init__(self, port: int, ids: list[int]) -> None:
        inputs = [{"name": "driver_id", "datatype": "BYTES", "shape": [len(ids)], "data": [str(i) for i in ids]}]
        self.body = json.dumps({"inputs": inputs})
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.defaulted = 0  # calls where the store missed the budget (features.budget_ms): reported, not hidden

    def scores(self) -> np.ndarray:
        self.conn.request("POST", "/v2/models/p/infer", self.body, {"Content-Type": "application/json"})
        answer = self.conn.getresponse()
        payload = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"sibyl REST answered {answer.status}: {payload[:200]!r}")
        data = json.loads(payload)
        self.defaulted += "defaulted" in data.get("parameters", {})
        return np.asarray(data["outputs"][0]["data"], np.float32)

    def close(self) -> None:
        self.conn.close()


def _matrix(columns: dict[str, list[Any]], specs: list[FeatureSpec], rows: int) -> np.ndarray:
    """The model's float32 input from Feast's columns, in the manifest's column order; a null takes its default."""
    matrix = np.empty((rows, sum(s.dim for s in specs)), dtype=np.float32)
    at = 0
    for spec in specs:
        for r, value in enumerate(columns[spec.name]):
            if value is None:
                matrix[r, at : at + spec.dim] = spec.default_values
            else:
                vector = np.zeros(spec.dim, dtype=np.float32)
                items = np.asarray(value if isinstance(value, list) else [value], dtype=np.float64)[: spec.dim]
                vector[: len(items)] = items
                matrix[r, at : at + spec.dim] = vector
        at += spec.dim
    return matrix


# ---- the pipelines
@contextlib.contextmanager
def sibyl_serve(store: Path, redis_url: str, extra_env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """`sibyl serve` reading Feast's layout in redis_url, models from store; extra_env on top (benchmarks.peers.
    feast_ab serves another checkout with its PYTHONPATH)."""
    env = {
        "SIBYL_MODEL_STORE__URL": f"file://{store}", "SIBYL_METRICS__PORT": "0", "SIBYL_PREDLOG__SINK": "none",
        "SIBYL_FEATURES__BACKEND": "feast-redis", "SIBYL_FEATURES__URL": redis_url,
        "SIBYL_FEATURES__CACHE_TTL_S": "0",  # the cache would hide the store after the first call
        "SIBYL_FEATURES__FEAST__PROJECT": "bench", "SIBYL_FEATURES__FEAST__ENTITIES": '["driver_id=int64"]',
        "SIBYL_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }  # fmt: skip
    command = [sys.executable, "-m", "sibyl", "serve", "--port", "0", "--metrics-port", "0", "--http-port", "0"]
    with ServerProcess(command, env, name="sibyl-feast") as server:
        yield server


def _pipelines(
    work: Path, redis_url: str, feast: FeastServer, rows_list: list[int], requests: int, blocks: int
) -> list[Any]:
    specs = specs_of_driver_stats()
    catalog = Catalog(FileStore(work / "store"))
    publish_logistic(catalog, "m", "1", inputs=specs, bias=-0.5)
    catalog.promote("p", "m@1")
    model = work / "store" / "models" / "m" / "1" / "model.onnx"
    results: list[Any] = []
    python = peers_setup.ensure("mlserver")
    with (
        sibyl_serve(work / "store", redis_url) as sibyl,
        MLServerPeer(python, model, name="m") as mlserver,
        echo_server() as echo,
    ):
        sibyl_channel, ml_channel = grpc.insecure_channel(sibyl.target), grpc.insecure_channel(mlserver.target)
        echo_channel = grpc.insecure_channel(echo.target)
        predict, predict_echo = (
            channel.unary_unary(
                PREDICT,
                request_serializer=PredictRequest.SerializeToString,
                response_deserializer=PredictResponse.FromString,
            )
            for channel in (sibyl_channel, echo_channel)
        )
        infer = ml_channel.unary_unary(MODEL_INFER)
        for rows in rows_list:
            ids = IDS[:rows]
            request = PredictRequest(predictor="p", rows=[FeatureRow(entities={"driver_id": str(i)}) for i in ids])

            defaulted = [0]  # calls where the store missed the budget (features.budget_ms): reported, not hidden

            def via_sibyl(request: PredictRequest = request, defaulted: list[int] = defaulted) -> np.ndarray:
                answer = predict(request, timeout=10)
                defaulted[0] += bool(answer.defaulted)
                return np.asarray(answer.results[0].scores)

            def via_composite(ids: list[int] = ids) -> np.ndarray:
                matrix = _matrix(feast.features(ids), specs, len(ids))
                return scores(infer(infer_request("m", "input", matrix), timeout=10), "probabilities", 1)

            for _ in range(20):  # connections warm, then the same features must give the same scores
                via_sibyl()
            defaulted[0] = 0
            np.testing.assert_allclose(via_sibyl(), via_composite(), rtol=1e-6)
            assert not defaulted[0], "sibyl defaulted features on the check call: the store is not what Feast wrote"
            rest = SibylRest(sibyl.http_port, ids)
            np.testing.assert_allclose(rest.scores(), via_composite(), rtol=1e-6)
            assert not rest.defaulted, "sibyl defaulted features over REST: the store is not what Feast wrote"
            cases: list[Case] = [
                (f"predict: sibyl serve (feast-redis), {rows} rows", via_sibyl, [sibyl.pid or 0]),
                (f"predict: sibyl serve V2 REST (feast-redis), {rows} rows", rest.scores, [sibyl.pid or 0]),
                (f"predict: feast serve + MLServer, {rows} rows", via_composite, [feast.proc.pid, mlserver.pid or 0]),
                (f"floor: echo server, {rows} rows", partial(predict_echo, request, timeout=10), [echo.pid or 0]),
            ]
            sibyl_grpc, sibyl_rest, composite, floor = interleaved(cases, requests, blocks)
            results += [
                {**sibyl_grpc, "defaulted_calls": defaulted[0]},
                {**sibyl_rest, "defaulted_calls": rest.defaulted},
                composite,
                floor,
                ratios(rows, composite, {"grpc": sibyl_grpc, "rest": sibyl_rest, "floor": floor}),
            ]
            rest.close()
        for channel in (sibyl_channel, ml_channel, echo_channel):
            channel.close()
    return results


def ratios(rows: int, composite: dict[str, Any], others: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each case's p99 and CPU per call over the composite's: the issue's targets are p99 <= 0.25x, CPU <= 0.5x
    (docs/features.md). The floor's p99 ratio is what a server that does nothing would score in the same turns."""
    out: dict[str, Any] = {"ratios_to_composite": f"{rows} rows"}
    for name, case in others.items():
        out[f"{name}_p99"] = round(case["p99_ms"] / composite["p99_ms"], 3)
        out[f"{name}_cpu"] = round(case["cpu_ms"] / composite["cpu_ms"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers.feast_pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=500, help="timed requests per case (default 500)")
    parser.add_argument(
        "--blocks", type=int, default=6, help="turns the pipelines' cases take, each a share of --requests (default 6)"
    )
    parser.add_argument("--no-composite", action="store_true", help="features only (no sibyl serve, no MLServer)")
    args = parser.parse_args(argv)
    if not 1 <= args.blocks <= args.requests:
        parser.error(f"--blocks must be between 1 and --requests ({args.requests}), got {args.blocks}")
    rows_list = [1, 100]
    results: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis:
        work = Path(tmp)
        address = redis.url.split("//")[1].split("/")[0]
        setup = {"connection": address, "project": "bench", "version": 3, "extra_drivers": len(IDS), "reads": []}
        run_feast(work / "bench", setup)
        feast = FeastServer(work / "bench")
        try:
            for rows in rows_list:
                results.append(asyncio.run(_fetcher_case(redis.url, rows, args.requests)))
                once = lambda rows=rows: feast.features(IDS[:rows])  # noqa: E731
                results.append(timed(f"features: feast serve, {rows} rows", once, args.requests, [feast.proc.pid]))
            if not args.no_composite:
                results += _pipelines(work, redis.url, feast, rows_list, args.requests, args.blocks)
        finally:
            feast.close()
    for line in results:
        print(json.dumps(line))
    print(json.dumps({"feast_serve_reconnects": feast.reconnects}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
