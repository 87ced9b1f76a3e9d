"""limit-inprocess: onnxruntime called directly on the same model and input matrix: the inference floor."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.load.loadgen import RunResult
from benchmarks.load.stats import record_us
from sibyl.models.runtime import session_options


def session(model_file: Path) -> ort.InferenceSession:
    """The session sibyl runs a small batch on (sibyl.models.runtime: one thread, no spinning)."""
    return ort.InferenceSession(str(model_file), session_options(1), providers=["CPUExecutionProvider"])


def run_inprocess(
    model_file: Path, matrix: np.ndarray, duration_s: float, warmup_s: float = 0.5, max_calls: int = 1_000_000
) -> RunResult:
    """Back-to-back session.run calls for duration_s (after warm-up); latency of each call."""
    sess = session(model_file)
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(matrix, dtype=np.float32)}
    result = RunResult("inprocess", 0.0, duration_s)
    warm_until = time.perf_counter() + warmup_s
    while time.perf_counter() < warm_until:
        sess.run(None, feed)
    begin, cpu0 = time.perf_counter(), time.process_time()
    stop_at = begin + duration_s
    for _ in range(max_calls):
        start = time.perf_counter()
        if start >= stop_at:
            break
        sess.run(None, feed)
        record_us(result.latency, (time.perf_counter() - start) * 1e6)
        result.ok += 1
    result.sent = result.ok
    result.duration_s = time.perf_counter() - begin
    result.client_cpu_s, result.cpu_wall_s = time.process_time() - cpu0, result.duration_s
    result.server_cpu_s = result.client_cpu_s  # no server: the process running the model is this one
    return result
