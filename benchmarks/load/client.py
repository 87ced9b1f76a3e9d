"""gRPC load clients: one job = one run against one method with one pre-serialized request.

Requests are sent as raw bytes through a generic unary method (no per-call protobuf encoding in the
client), so the same client drives sibyl, the echo baseline and the KServe V2 peers. When one process
cannot keep up, `ClientPool` runs the job in several spawn-started processes (each with its share of the
rate or concurrency, all starting at the same instant) and merges their HDR histograms. With a `server_pid`
each run also reads the server tree's CPU and the clients' own over the measured window (benchmarks.load.cpu).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, replace
from multiprocessing.pool import Pool
from types import TracebackType
from typing import Any, Self

import grpc

from benchmarks.load.cpu import Window
from benchmarks.load.loadgen import RunResult, closed_loop, open_loop
from benchmarks.load.stats import encode, merge

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class Job:
    target: str  # host:port
    method: str  # full method path, e.g. /sibyl.v1.PredictionService/Predict
    payload: bytes  # serialized request
    mode: str = "open"  # "open" (rate) or "closed" (concurrency)
    rate: float = 100.0
    concurrency: int = 1
    duration_s: float = 5.0
    warmup_s: float = 1.0
    timeout_s: float = 5.0  # per-call deadline
    start_wall: float | None = None  # time.time() at which every process begins (open loop)
    server_pid: int | None = None  # read this process tree's CPU over the measured window


async def run_job_async(job: Job) -> RunResult:
    async with grpc.aio.insecure_channel(job.target, options=GRPC_OPTIONS) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10.0)
        stub = channel.unary_unary(job.method)  # no serializers: bytes in, bytes out

        def call() -> Any:
            return stub(job.payload, timeout=job.timeout_s)

        window = Window(job.server_pid)
        if job.mode == "closed":
            return await closed_loop(call, job.concurrency, job.duration_s, job.warmup_s, window=window)
        start_at = None
        if job.start_wall is not None:
            start_at = time.monotonic() + max(0.0, job.start_wall - time.time())
        return await open_loop(call, job.rate, job.duration_s, job.warmup_s, start_at=start_at, window=window)


def run_job(job: Job) -> RunResult:
    import uvloop

    return uvloop.run(run_job_async(job))


def _run_job_encoded(job: Job) -> dict[str, Any]:
    """Worker-process entry point: histograms travel back encoded (HdrHistogram objects don't pickle well)."""
    r = run_job(job)
    return {
        "mode": r.mode,
        "target_rps": r.target_rps,
        "duration_s": r.duration_s,
        "latency": encode(r.latency),
        "send_lag": encode(r.send_lag),
        "sent": r.sent,
        "ok": r.ok,
        "errors": dict(r.errors),
        "unfinished": r.unfinished,
        "concurrency": r.concurrency,
        "server_cpu_s": r.server_cpu_s,
        "client_cpu_s": r.client_cpu_s,
        "cpu_wall_s": r.cpu_wall_s,
    }


def merge_results(parts: list[dict[str, Any]], target_rps: float) -> RunResult:
    out = RunResult(parts[0]["mode"], target_rps, max(p["duration_s"] for p in parts))
    out.latency = merge(p["latency"] for p in parts)
    out.send_lag = merge(p["send_lag"] for p in parts)
    out.sent = sum(p["sent"] for p in parts)
    out.ok = sum(p["ok"] for p in parts)
    out.errors = sum((Counter(p["errors"]) for p in parts), Counter())
    out.unfinished = sum(p["unfinished"] for p in parts)
    out.concurrency = sum(p["concurrency"] for p in parts)
    server = [p["server_cpu_s"] for p in parts if p["server_cpu_s"] is not None]
    out.server_cpu_s = server[0] if server else None  # one share reads it (see ClientPool.run)
    out.client_cpu_s = sum(p["client_cpu_s"] for p in parts)
    out.cpu_wall_s = max(p["cpu_wall_s"] for p in parts)
    return out


class ClientPool:
    """`processes` == 1 runs jobs in this process; more uses a spawn pool kept for the whole benchmark."""

    def __init__(self, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError("need at least one client process")
        self.processes = processes
        self._pool: Pool | None = None

    def __enter__(self) -> Self:
        if self.processes > 1:
            self._pool = multiprocessing.get_context("spawn").Pool(self.processes)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def run(self, job: Job) -> RunResult:
        if self._pool is None:
            return run_job(job)
        n = self.processes
        start = time.time() + 0.5  # every worker is already up: half a second to receive the job
        shares = [
            replace(
                job,
                rate=job.rate / n,
                concurrency=max(1, job.concurrency // n + (i < job.concurrency % n)),
                start_wall=start,
                server_pid=job.server_pid if i == 0 else None,  # one reader of the server's CPU is enough
            )
            for i in range(n)
        ]
        parts = self._pool.map(_run_job_encoded, shares)
        return merge_results(parts, job.rate if job.mode == "open" else 0.0)
