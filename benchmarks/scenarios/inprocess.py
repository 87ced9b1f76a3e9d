"""limit-inprocess: onnxruntime called directly on the same model and input matrix: the inference floor."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.load.loadgen import RunResult
from benchmarks.load.stats import record_us


def session(model_file: Path, threads: int | None = None) -> ort.InferenceSession:
    """Same thread count the server uses with one worker (all cores)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])


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
    begin = time.perf_counter()
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
    return result
