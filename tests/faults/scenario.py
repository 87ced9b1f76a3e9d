"""One backend fault under steady open-loop load through a real `sibyl serve` subprocess, judged on RPC outcomes.

`run_fault` sends `rate` calls/s (each with its own deadline), waits `before_s`, breaks something (mark
"fault"), keeps it broken for `fault_s`, repairs it (mark "repair"), waits until calls are healthy again
(bounded), keeps the load on for `after_s`, and returns the load's record of every call. `Figures` says what
the fault table needs: failed calls, p99 during the fault, recovery time. Nothing here asserts on latency.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sibyl.v1.predict_pb2 import PredictRequest
from tests.faults.harness import OpenLoad, Shot, p99_ms
from tests.support.inproc import serve_subprocess
from tests.support.workers import answering

Action = Callable[[OpenLoad], Awaitable[object]]  # gets the running load (e.g. to see which worker answers)


def ok(shot: Shot) -> bool:
    return shot.code == "OK"


async def run_fault(
    port: int,
    make_request: Callable[[int], PredictRequest],
    break_it: Action,
    repair: Action,
    healthy: Callable[[Shot], bool] = ok,
    *,
    rate: float = 100.0,
    deadline_s: float = 2.0,
    channels: int = 1,
    workers: int = 0,
    before_s: float = 3.0,
    fault_s: float = 10.0,
    after_s: float = 3.0,
    recover_within_s: float = 30.0,
) -> OpenLoad:
    load = OpenLoad(
        f"127.0.0.1:{port}", make_request, rate=rate, deadline_s=deadline_s, channels=channels, workers=workers
    )
    async with load:
        load.mark("start")
        await asyncio.sleep(before_s)
        load.mark("fault")
        broken = time.monotonic()
        await break_it(load)
        await asyncio.sleep(max(0.0, broken + fault_s - time.monotonic()))
        load.mark("repair")
        await repair(load)
        load.mark("repaired")
        deadline = time.monotonic() + recover_within_s
        while load.first(healthy, "repaired") is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        load.mark("recovered")
        await asyncio.sleep(after_s)
        load.mark("end")
    return load


@dataclass
class Figures:
    """The fault-table row of one run."""

    name: str
    load: OpenLoad
    healthy: Callable[[Shot], bool] = ok

    @property
    def failed(self) -> list[Shot]:
        return self.load.failed()

    @property
    def during(self) -> list[Shot]:
        return self.load.between("fault", "repair")

    def recovery_s(self) -> float | None:
        """Repair (the server back, or the process restarted) -> the first healthy call sent after it."""
        return self.load.first(self.healthy, "repair")

    def settled_s(self) -> float | None:
        """Repair -> the send time of the last unhealthy call (0 when none came after the repair)."""
        t0 = self.load.marks["repair"]
        late = [s.t - t0 for s in self.load.shots if s.t >= t0 and not self.healthy(s)]
        return max(late, default=0.0)

    def row(self) -> str:
        load = self.load
        during = self.during
        recovery = self.recovery_s()
        return (
            f"[{self.name}] calls {len(load.shots)} at {len(load.shots) / max(load.marks['end'], 1e-9):.0f}/s "
            f"{dict(load.codes())}; failed {len(self.failed)} (during fault {sum(not ok(s) for s in during)} of "
            f"{len(during)}); p99 before {p99_ms(load.between('start', 'fault')):.1f} ms, during "
            f"{p99_ms(during):.1f} ms, after {p99_ms(load.between('recovered')):.1f} ms; recovery: first healthy "
            f"call {_s(recovery)} after repair, last unhealthy {_s(self.settled_s())} after repair; "
            f"healthy during fault {sum(self.healthy(s) for s in during)} of {len(during)}"
        )


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def stop(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s; the exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return -9


def start_server(tmp_path: Path, *flags: str, workers: int = 1, **env: str) -> tuple[subprocess.Popen[str], int]:
    """`sibyl serve` over tests/support/inproc.publish_models, its stderr in tmp_path/server.log; returns once
    `workers` distinct worker processes answer (the supervisor prints its line before its workers serve)."""
    if workers > 1:
        flags = (*flags, "--workers", str(workers))
    proc, port, _ = serve_subprocess(tmp_path, *flags, log_to=tmp_path / "server.log", **env)
    try:
        answering(port, workers)
    except BaseException:
        proc.kill()
        raise
    return proc, port


def log_tail(tmp_path: Path, chars: int = 3000) -> str:
    path = tmp_path / "server.log"
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no server log)"
