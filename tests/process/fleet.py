"""A fleet of real `sibyl serve` replicas on one file:// model store, the clients that call it, and the rolling
restart: what tests/process/test_fleet.py runs (docs/deploy.md#graceful-shutdown).

Each replica has a fixed gRPC port (a restart comes back on it, as a pod behind a stable address), its own
prediction log and spool. `Caller` sends an open loop of Predict calls through one client and keeps every outcome
with the answering process (the `sibyl-worker` trailer) and the model version that answered.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sibyl.process.banner import parse_serving_line
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, PredictResponse
from tests.support.inproc import server_env
from tests.support.process import free_port

SERVICE = "sibyl.v1.PredictionService"
READY_TIMEOUT_S = 60.0  # a replica's start-up on a machine other test runs share


def stock_service_config(attempts: int = 5) -> dict[str, Any]:
    """What a team that is not ours would write: round_robin and a retry policy on UNAVAILABLE, no health
    checking, no retry budget."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
                "retryPolicy": {
                    "maxAttempts": attempts,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }


class Replica:
    """One `sibyl serve` of the fleet, started and stopped as a deploy would: SIGTERM, wait for exit, start."""

    def __init__(self, index: int, root: Path, store: Path, **settings: str) -> None:
        self.index = index
        self.dir = root / f"replica-{index}"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.env = server_env(
            self.dir,
            SIBYL_MODEL_STORE__URL=f"file://{store}",
            SIBYL_MODEL_STORE__POLL_INTERVAL_S="0.2",
            SIBYL_METRICS__PORT="0",
            SIBYL_LOG_LEVEL="INFO",
            SIBYL_LOG_JSON="true",
            **settings,
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.pids: list[int] = []  # every process this replica has been, in order
        self.exit_codes: list[int] = []

    @property
    def log_path(self) -> Path:
        return self.dir / "predictions.jsonl"

    async def start(self) -> None:
        """Returns once the replica prints its serving line and its health service says SERVING."""
        with (self.dir / "server.log").open("ab") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sibyl", "serve", "--port", str(self.port),
                env=self.env, cwd=self.dir, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )  # fmt: skip
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT_S)
        serving = parse_serving_line(line.decode())
        assert serving is not None and serving.port == self.port, f"replica {self.index}: {line!r}, {self.tail()}"
        self.pids.append(self.proc.pid)
        await wait_serving(self.port)

    async def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and the exit code (the drain runs meanwhile)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        self.exit_codes.append(code)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    def drains(self) -> list[dict[str, Any]]:
        """The figures each drain of this replica logged ("sibyl drained": seconds, refused, connections closed)."""
        path = self.dir / "server.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{") and '"sibyl drained"' in line]

    def tail(self, chars: int = 1500) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


async def wait_serving(port: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert time.monotonic() < deadline, f"port {port} not SERVING after {timeout_s} s"
            await asyncio.sleep(0.05)


def targets(replicas: list[Replica]) -> str:
    """One gRPC target over every replica's address (a static list: what DNS returns for a headless Service)."""
    return "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)


@dataclass(frozen=True, slots=True)
class Outcome:
    t: float  # send time, seconds since the load started
    code: str
    latency_s: float
    prediction_id: str = ""
    version: str = ""  # of the answering model
    worker: str = ""  # pid of the process that answered


Send = Callable[[PredictRequest], Awaitable[tuple[PredictResponse, str]]]  # (response, worker pid)


def request(i: int) -> PredictRequest:
    return PredictRequest(
        request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i % 7), "age": 30.0})]
    )


@dataclass
class Caller:
    """Open loop: call i is sent at i / rate s whatever happened to earlier ones, up to max_calls or stop()."""

    name: str
    send: Send
    rate: float
    max_calls: int
    outcomes: list[Outcome] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = time.monotonic()
        self._stop = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._pacer = asyncio.create_task(self._pace())

    def now(self) -> float:
        return time.monotonic() - self._start

    def mark(self, name: str) -> None:
        self.marks[name] = self.now()

    async def _pace(self) -> None:
        for i in range(self.max_calls):
            if self._stop.is_set():
                return
            delay = self._start + i / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._call(i))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, i: int) -> None:
        sent = time.monotonic()
        try:
            response, worker = await self.send(request(i))
        except grpc.aio.AioRpcError as exc:
            self.outcomes.append(Outcome(sent - self._start, exc.code().name, time.monotonic() - sent))
            return
        version = response.results[0].version if response.results else ""
        latency = time.monotonic() - sent
        self.outcomes.append(Outcome(sent - self._start, "OK", latency, response.prediction_id, version, worker))

    async def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        await self._pacer
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=timeout_s)

    # ---- figures
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.code != "OK"]

    def answered_by(self, pid: int) -> bool:
        return any(o.worker == str(pid) for o in self.outcomes)

    def between(self, start: str, end: str) -> list[Outcome]:
        return [o for o in self.outcomes if self.marks[start] <= o.t < self.marks[end]]

    def flip_backs(self, new_version: str) -> list[Outcome]:
        """Answers by an old version from a process that had already answered with `new_version` before the call
        was sent (calls in flight across the swap may finish in any order; these may not)."""
        first_new: dict[str, float] = {}
        for o in self.outcomes:
            if o.version == new_version:
                done = o.t + o.latency_s
                first_new[o.worker] = min(first_new.get(o.worker, done), done)
        return [
            o
            for o in self.outcomes
            if o.code == "OK" and o.version != new_version and o.t > first_new.get(o.worker, 1e18)
        ]

    def switched(self, promote: str, new_version: str) -> float:
        """Seconds from mark `promote` until every process that answered before it had answered with
        `new_version` (inf if one never did)."""
        t0 = self.marks[promote]
        first: dict[str, float] = {o.worker: math.inf for o in self.outcomes if o.code == "OK" and o.t < t0}
        for o in self.outcomes:
            if o.version == new_version and o.worker in first:
                first[o.worker] = min(first[o.worker], o.t + o.latency_s - t0)
        return max(first.values(), default=math.inf)

    def summary(self, promote: str, during: tuple[str, str]) -> str:
        codes: dict[str, int] = {}
        for o in self.outcomes:
            codes[o.code] = codes.get(o.code, 0) + 1
        before = [o for o in self.outcomes if o.t < self.marks[promote]]
        return (
            f"[{self.name}] calls {len(self.outcomes)} {codes}; failed {len(self.failed())}; p99 before "
            f"{p99_of(before):.1f} ms, during the roll {p99_of(self.between(*during)):.1f} ms; every replica on the "
            f"new version {self.switched(promote, '2'):.2f} s after the promote"
        )


def p99_of(outcomes: list[Outcome]) -> float:
    latencies = sorted(o.latency_s for o in outcomes if o.code == "OK")
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else 0.0


def logged_ids(replicas: list[Replica]) -> set[str]:
    ids: set[str] = set()
    for replica in replicas:
        if replica.log_path.exists():
            for line in replica.log_path.read_text().splitlines():
                record = json.loads(line)
                if record.get("role") == "ROLE_PRIMARY":
                    ids.add(record["prediction_id"])
    return ids
