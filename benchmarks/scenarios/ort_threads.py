"""onnxruntime alone: CPU and wall time per session.run by rows per call and intra-op threads (spinning off).

What decides sibyl's thread rule (docs/design.md "Inference threads"): on the bundled gbdt@1 and mlp@1, at
1 .. 10,000 rows, one intra-op thread against two, both with `session.intra_op.allow_spinning = "0"` (plus
two threads with spinning on, the onnxruntime default, for reference). CPU is the process's own
(`time.process_time`: every thread of this process), so a spinning pool shows up as CPU a call burns
while it waits; wall is `time.perf_counter`. Each cell is the median of `--repeats` rounds, the rounds
interleaved over the configurations so that a burst of other work on the machine hits them all alike.

    python -m benchmarks.scenarios.ort_threads [--rows 1,10,100,1000,10000] [--seconds 0.2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.load import workload as w

MODELS = ("gbdt@1", "mlp@1")
ROWS = (1, 10, 100, 1000, 10000)
SETTLE_S = 0.05
CONFIGS = (("1 thread", 1, False), ("2 threads", 2, False), ("2 threads, spinning", 2, True))


@dataclass(frozen=True)
class Cell:
    model: str
    rows: int
    config: str
    threads: int
    spinning: bool
    calls: int  # calls in the median round
    wall_us: float  # per call, median of the rounds
    cpu_us: float  # per call, median of the rounds
    wall_us_range: tuple[float, float]
    cpu_us_range: tuple[float, float]


def session(model_file: Path, threads: int, spinning: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])


def one_round(sess: ort.InferenceSession, feed: dict[str, np.ndarray], seconds: float, max_calls: int) -> tuple:
    """Back-to-back calls for about `seconds` (at least 3): (calls, wall s, cpu s).

    Process CPU counts every thread, so first let any pool the previous round left spinning go to sleep.
    """
    time.sleep(SETTLE_S)
    calls = 0
    w0, c0 = time.perf_counter(), time.process_time()
    stop = w0 + seconds
    while calls < max_calls and (calls < 3 or time.perf_counter() < stop):
        sess.run(None, feed)
        calls += 1
    return calls, time.perf_counter() - w0, time.process_time() - c0


def measure(models: tuple[str, ...], rows: tuple[int, ...], seconds: float, repeats: int) -> list[Cell]:
    cells = []
    for ref in models:
        m = w.manifest(ref)
        base = w.sample_matrix(m.columns, max(rows))
        sessions = {name: session(w.model_path(ref), t, spin) for name, t, spin in CONFIGS}
        for n in rows:
            feed = {m.input_name: np.ascontiguousarray(base[:n])}
            for s in sessions.values():  # warm-up: first runs allocate
                one_round(s, feed, 0.05, 20)
            rounds: dict[str, list[tuple]] = {name: [] for name in sessions}
            for _ in range(repeats):
                for name, s in sessions.items():
                    rounds[name].append(one_round(s, feed, seconds, 1_000_000))
            for name, threads, spin in CONFIGS:
                per = [(c, wall / c * 1e6, cpu / c * 1e6) for c, wall, cpu in rounds[name]]
                walls, cpus = [p[1] for p in per], [p[2] for p in per]
                mid = sorted(per, key=lambda p: p[2])[len(per) // 2]
                cells.append(
                    Cell(
                        ref,
                        n,
                        name,
                        threads,
                        spin,
                        mid[0],
                        round(statistics.median(walls), 1),
                        round(statistics.median(cpus), 1),
                        (round(min(walls), 1), round(max(walls), 1)),
                        (round(min(cpus), 1), round(max(cpus), 1)),
                    )
                )
    return cells


def markdown(cells: list[Cell]) -> str:
    """One line per model and rows: wall and CPU µs per call, median (min) over the rounds, per configuration.
    The minimum is the least-disturbed round (the machine may be shared)."""
    names = [name for name, _, _ in CONFIGS]
    head = " | ".join(f"{n} wall | {n} CPU" for n in names)
    lines = [f"| model | rows | {head} |", "|---|---:|" + "---:|" * (2 * len(names))]
    by_key = {(c.model, c.rows, c.config): c for c in cells}
    for model, rows in dict.fromkeys((c.model, c.rows) for c in cells):
        parts = []
        for n in names:
            c = by_key.get((model, rows, n))
            parts += (
                ["-", "-"]
                if c is None
                else [f"{c.wall_us:,.0f} ({c.wall_us_range[0]:,.0f})", f"{c.cpu_us:,.0f} ({c.cpu_us_range[0]:,.0f})"]
            )
        lines.append(f"| {model} | {rows:,} | {' | '.join(parts)} |")
    return "\n".join(lines) + "\n"


def _from_json(path: Path) -> list[Cell]:
    return [
        Cell(**{**c, "wall_us_range": tuple(c["wall_us_range"]), "cpu_us_range": tuple(c["cpu_us_range"])})
        for c in json.loads(path.read_text())
    ]


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated row counts, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"row counts must be >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scenarios.ort_threads", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=_ints, default=ROWS, help="comma-separated rows per call")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated refs of the example store")
    p.add_argument("--seconds", type=float, default=0.2, help="seconds per round and configuration")
    p.add_argument("--repeats", type=int, default=7, help="rounds per cell (median and range)")
    p.add_argument("--json", type=Path, help="also write the cells as JSON here")
    p.add_argument("--table", type=Path, help="only print the table of a JSON written by --json")
    args = p.parse_args(argv)
    if args.table:
        print(markdown(_from_json(args.table)), end="")
        return 0
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if not w.model_path(m).exists()]
    if unknown or args.seconds <= 0 or args.repeats < 1:
        print(f"ort_threads: error: unknown models {unknown} or non-positive --seconds/--repeats", file=sys.stderr)
        return 2
    cells = measure(models, args.rows, args.seconds, args.repeats)
    print(markdown(cells), end="")
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
