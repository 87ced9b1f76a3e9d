"""perf_analyzer (Triton's C++ load tool) as a second, independent client for V2 servers that answer Triton's
ModelConfig RPC (sibyl's V2 endpoint and Triton; MLServer does not, so perf_analyzer cannot drive it).

One run = one concurrency and batch size, closed loop, `--measurement-interval` windows with stability
checking off (`-s 999`: the first windows count, a shared machine never looks stable) and `-r` windows.
Latency and throughput are perf_analyzer's own (its CSV); server CPU per call is the server tree's CPU over
the whole perf_analyzer process divided by the calls the server answered meanwhile (V2 ModelStatistics
`success.count`, read before and after); client CPU is perf_analyzer's own (RUSAGE_CHILDREN).

scripts/setup_perf_analyzer.sh builds its venv (and the libcudart it links) and prints the wrapper's path.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load.cpu import tree_cpu_s

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / ".bench-venvs" / "perf-analyzer" / "perf_analyzer.sh"
SETUP = REPO / "scripts" / "setup_perf_analyzer.sh"


def binary() -> str | None:
    """$SIBYL_PERF_ANALYZER, the venv's wrapper, or perf_analyzer on PATH; None when there is none."""
    found = os.environ.get("SIBYL_PERF_ANALYZER")
    if found:
        return found
    if WRAPPER.is_file() and os.access(WRAPPER, os.X_OK):
        return str(WRAPPER)
    return shutil.which("perf_analyzer")


def setup(timeout_s: float = 900.0) -> str:
    """Run scripts/setup_perf_analyzer.sh (idempotent); its path. RuntimeError with the script's output."""
    done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{SETUP.name} failed: {(done.stderr or done.stdout).strip()[-1000:]}")
    return done.stdout.strip().splitlines()[-1]


@dataclass
class PerfRun:
    concurrency: int
    batch: int
    requests_per_s: float  # calls per second (perf_analyzer's inferences/s divided by the batch size)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    calls: int  # answered by the server over the whole perf_analyzer process (warm-up included)
    server_cpu_s: float | None
    client_cpu_s: float
    wall_s: float
    error: str | None = None

    @property
    def server_cpu_us_per_call(self) -> float | None:
        return self.server_cpu_s / self.calls * 1e6 if self.server_cpu_s is not None and self.calls else None

    @property
    def client_cpu_us_per_call(self) -> float | None:
        return self.client_cpu_s / self.calls * 1e6 if self.calls else None


def input_data(tensors: Mapping[str, Sequence[float]]) -> str:
    """--input-data JSON: one step, each named tensor's values for one row (perf_analyzer repeats it -b times)."""
    step = {name: {"content": [float(v) for v in values], "shape": [len(values)]} for name, values in tensors.items()}
    return json.dumps({"data": [step]})


def parse_csv(text: str, batch: int) -> dict[str, float]:
    """The -f report: one row per concurrency; latencies in microseconds."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ValueError("perf_analyzer wrote no result row")
    row = rows[-1]
    return {
        "requests_per_s": float(row["Inferences/Second"]) / batch,
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p90_ms": float(row["p90 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
    }


def _count(answered: Callable[[], int]) -> int | None:
    """The server's call count, or None when it will not tell (the run still has perf_analyzer's numbers)."""
    try:
        return answered()
    except Exception:  # any RPC error: the statistics API is off or restricted
        return None


def run(
    exe: str,
    target: str,
    model: str,
    tensors: Mapping[str, Sequence[float]],
    *,
    batch: int,
    concurrency: int,
    window_s: float,
    windows: int,
    server_pid: int | None,
    answered: Callable[[], int],
    timeout_s: float = 300.0,
) -> PerfRun:
    """One perf_analyzer run; `answered()` = the server's successful-call count for `model` so far."""
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        data, report = Path(tmp) / "data.json", Path(tmp) / "report.csv"
        data.write_text(input_data(tensors))
        # -x 1: perf_analyzer needs an explicit version to read the model's statistics.
        command = [
            exe,
            "-m",
            model,
            "-x",
            "1",
            "-i",
            "grpc",
            "-u",
            target,
            "-b",
            str(batch),
            "--concurrency-range",
            str(concurrency),
            "--measurement-interval",
            str(round(window_s * 1000)),
            "--stability-percentage",
            "999",
            "--max-trials",
            str(windows),
            "--input-data",
            str(data),
            "-f",
            str(report),
        ]
        calls0, cpu0 = _count(answered), tree_cpu_s(server_pid) if server_pid else None
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        wall = time.monotonic() - wall0
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = tree_cpu_s(server_pid) - cpu0 if server_pid and cpu0 is not None else None
        calls1 = _count(answered)
        calls = calls1 - calls0 if calls0 is not None and calls1 is not None else 0  # 0: CPU per call unknown
        client = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        empty = PerfRun(concurrency, batch, 0.0, 0.0, 0.0, 0.0, calls, cpu, client, wall)
        if done.returncode != 0 or not report.exists():
            lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            empty.error = f"perf_analyzer exited {done.returncode}: {' / '.join(lines[-3:])}"
            return empty
        try:
            numbers = parse_csv(report.read_text(), batch)
        except (ValueError, KeyError) as exc:
            empty.error = f"unreadable perf_analyzer report: {exc}"
            return empty
    return PerfRun(concurrency, batch, **numbers, calls=calls, server_cpu_s=cpu, client_cpu_s=client, wall_s=wall)
