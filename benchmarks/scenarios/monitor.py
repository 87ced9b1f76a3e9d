"""`python -m benchmarks.scenarios.monitor`: the outcome evaluator's throughput and state size.

Writes a prediction log (a primary and a shadow record per call, `--rows` rows each, as the file sink writes them:
predlog.jsonl) and one outcome per row (proto3 JSON lines), then runs sibyl.monitor's Evaluator over the two files
in this process and reports: prediction records and joined outcomes per CPU-second (process CPU time, each phase
measured apart), and the state's bytes per prediction row (SQLite pages in use). `--calls 1000000 --rows 1` is the
issue's "1,000,000 predictions in the window" case.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from sibyl.monitor.evaluator import Evaluator, Slicers, file_sources
from sibyl.predlog.jsonl import to_json_bytes
from sibyl.v1.predict_pb2 import Role
from sibyl.v1.predlog_pb2 import PredictionLog


def write_streams(folder: Path, calls: int, rows: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    predictions, outcomes = folder / "predictions.jsonl", folder / "outcomes.jsonl"
    now = time.time_ns()
    with predictions.open("wb") as p, outcomes.open("wb") as o:
        for _ in range(calls):
            pid = os.urandom(16).hex()
            for model, role in (("gbdt", Role.ROLE_PRIMARY), ("mlp", Role.ROLE_SHADOW)):
                record = PredictionLog(prediction_id=pid, predictor="bench", model=model, version="1", role=role,
                                       sent_at_unix_nanos=now, num_rows=rows, score_dim=1,
                                       scores=rng.random(rows).astype(np.float32).tolist())  # fmt: skip
                p.write(to_json_bytes(record, newline=True))
            for r in range(rows):
                o.write(orjson.dumps({"prediction_id": pid, "row": r, "value": float(rng.random() < 0.3)}) + b"\n")
    return predictions, outcomes


def evaluate(folder: Path, predictions: Path, outcomes: Path, budget: int) -> Evaluator:
    return Evaluator(folder / "state", 7 * 86_400.0, budget, Slicers(None, 60.0), file_sources(predictions, outcomes))


def run(calls: int, rows: int, budget: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="sibyl-monitor-bench-") as tmp:
        folder = Path(tmp)
        predictions, outcomes = write_streams(folder, calls, rows)
        evaluator = evaluate(folder, predictions, folder / "none.jsonl", budget)
        start = time.process_time()
        while evaluator.step():
            pass
        ingest_s = time.process_time() - start
        evaluator.close()
        evaluator = evaluate(folder, predictions, outcomes, budget)
        start = time.process_time()
        while evaluator.step():
            pass
        join_s = time.process_time() - start
        state = evaluator.states[0]
        joined = state.counters["joined"]
        used = state.used_bytes()
        evaluator.close()
    return {
        "records_per_cpu_s": 2 * calls / ingest_s,
        "joined_per_cpu_s": joined / join_s,
        "joined": joined,
        "state_bytes_per_row": used / (calls * rows),
        "state_bytes": used,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=50_000)
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--budget", type=int, default=1024**3, help="monitor.max_state_bytes (default 1 GiB)")
    args = p.parse_args(argv)
    result = run(args.calls, args.rows, args.budget)
    print(
        f"calls={args.calls} rows={args.rows}: {result['records_per_cpu_s']:,.0f} prediction records/CPU-s, "
        f"{result['joined_per_cpu_s']:,.0f} joined outcomes/CPU-s ({result['joined']:,} joined), state "
        f"{result['state_bytes'] / 2**20:.1f} MiB = {result['state_bytes_per_row']:.0f} bytes per prediction row"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
