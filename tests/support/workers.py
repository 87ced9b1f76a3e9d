"""Looking at a running `sibyl serve --workers N` from outside: which workers answer, which processes it runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc

from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub


def answering(port: int, want: int, old: set[str] | None = None, timeout_s: float = 60.0) -> set[str]:
    """Worker pids answering fresh connections, once `want` of them (not in `old`) have; each connection sticks
    to the worker that accepted it, so only fresh ones show a new or replaced worker."""
    request = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})])
    pids: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(pids - (old or set())) < want:
        assert time.monotonic() < deadline, f"only workers {pids} answered within {timeout_s} s"
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                _, call = PredictionServiceStub(channel).Predict.with_call(request, timeout=5, wait_for_ready=True)
            except grpc.RpcError:
                time.sleep(0.05)
                continue
            pids.add(str(dict(call.trailing_metadata() or ()).get("sibyl-worker", "")))
    return pids


def worker_pids(supervisor: int) -> set[int]:
    """The supervisor's worker processes (multiprocessing spawn children, not its resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == supervisor and b"spawn_main" in command:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, 9)
