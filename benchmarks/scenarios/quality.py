"""sibyl.quality's own cost: rows per CPU-second of BinaryStats.add (batches of 1,000 rows, the state growing to
--rows rows), CPU per merge (two halves) and combine (24 hourly buckets), per read (auc, calibration) and per
to_bytes/from_bytes round trip of the whole, and the bytes per distinct score in memory and in to_bytes().

The evaluator's goal is >= 50,000 joined outcomes per CPU-second overall (issue 29), so add() must be far above
that. CPU is this process's (`time.process_time`); each figure is the median of --repeats rounds, the range beside
it. Scores are float32 from a logistic model: "distinct" is continuous scores (nearly every row its own key, the
state's worst case), "rounded" is scores rounded to 3 decimals (1,001 keys at most).

    python -m benchmarks.scenarios.quality [--rows 1000000] [--batch 1000] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sibyl.quality import BinaryStats

KINDS = ("distinct", "rounded")


@dataclass(frozen=True)
class Figure:
    name: str
    scores: str  # "distinct" or "rounded"
    weighted: bool
    value: float  # median over the rounds
    low: float
    high: float
    unit: str


def rows_of(kind: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(np.float64)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(-1.0, 1.0, rows) + 1.5 * y)))
    if kind == "rounded":
        s = np.round(s, 3)
    return y, s.astype(np.float32), rng.gamma(2.0, 0.5, rows)


def cpu(work: Callable[[], object], at_least_s: float = 0.05) -> float:
    """CPU seconds per call of `work`, called again until the calls took `at_least_s` (the clock's resolution)."""
    calls, start = 0, time.process_time()
    while True:
        work()
        calls += 1
        spent = time.process_time() - start
        if spent >= at_least_s:
            return spent / calls


def filled(y: np.ndarray, s: np.ndarray, w: np.ndarray | None, batch: int) -> BinaryStats:
    stats = BinaryStats()
    for start in range(0, y.size, batch):
        stats.add(y[start : start + batch], s[start : start + batch], None if w is None else w[start : start + batch])
    return stats


def figure(name: str, kind: str, weighted: bool, values: list[float], unit: str) -> Figure:
    return Figure(name, kind, weighted, statistics.median(values), min(values), max(values), unit)


def _part(y: np.ndarray, s: np.ndarray, w: np.ndarray | None, rows: slice, batch: int) -> BinaryStats:
    stats = filled(y[rows], s[rows], None if w is None else w[rows], batch)
    stats.auc()  # settled: a merge or read measured later costs only itself
    return stats


def measure_one(
    kind: str, w: np.ndarray | None, y: np.ndarray, s: np.ndarray, batch: int, repeats: int
) -> list[Figure]:
    rows = y.size
    add, merge, merge_keys, combine, combine_keys, auc, calibration, encode = ([] for _ in range(8))
    for _ in range(repeats):
        add.append(rows / cpu(partial(filled, y, s, w, batch), at_least_s=0.0))
        left, right = _part(y, s, w, slice(None, rows // 2), batch), _part(y, s, w, slice(rows // 2, None), batch)
        merge.append(1e3 * cpu(partial(left.merge, right)))
        merge_keys.append((left.distinct + right.distinct) / merge[-1] * 1e3)
        hours = [_part(y, s, w, slice(i, None, 24), batch) for i in range(24)]
        combine.append(1e3 * cpu(partial(BinaryStats.combine, hours)))
        combine_keys.append(sum(h.distinct for h in hours) / combine[-1] * 1e3)
        whole = left.merge(right)
        auc.append(1e3 * cpu(whole.auc))
        calibration.append(1e6 * cpu(whole.calibration))
        encode.append(1e3 * cpu(partial(_round_trip, whole)))
    whole = filled(y, s, w, batch)
    distinct = whole.distinct
    weighted = w is not None
    return [
        figure(f"add() in batches of {batch:,}", kind, weighted, add, "rows/CPU-s"),
        figure("merge() of two halves", kind, weighted, merge, "CPU ms"),
        figure("merge() of two halves, per input key", kind, weighted, merge_keys, "keys/CPU-s"),
        figure("combine() of 24 buckets", kind, weighted, combine, "CPU ms"),
        figure("combine() of 24 buckets, per input key", kind, weighted, combine_keys, "keys/CPU-s"),
        figure("auc() of the whole", kind, weighted, auc, "CPU ms"),
        figure("calibration() of the whole", kind, weighted, calibration, "CPU us"),
        figure("to_bytes() + from_bytes() of the whole", kind, weighted, encode, "CPU ms"),
        figure("distinct scores (keys) in the whole", kind, weighted, [float(distinct)], "keys"),
        figure("memory (nbytes) per key", kind, weighted, [whole.nbytes / distinct], "B"),
        figure("to_bytes() per key", kind, weighted, [len(whole.to_bytes()) / distinct], "B"),
    ]


def _round_trip(stats: BinaryStats) -> BinaryStats:
    return BinaryStats.from_bytes(stats.to_bytes())


def measure(rows: int, batch: int, repeats: int) -> list[Figure]:
    out: list[Figure] = []
    for kind in KINDS:
        y, s, w = rows_of(kind, rows, seed=1)
        out += measure_one(kind, None, y, s, batch, repeats)
        out += measure_one(kind, w, y, s, batch, repeats)
    return out


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown(figures: list[Figure]) -> str:
    lines = ["| measure | scores | weights | median | range | unit |", "|---|---|---|---:|---|---|"]
    for f in figures:
        span = "" if f.low == f.high else f"{_number(f.low)} .. {_number(f.high)}"
        weights = "fractional" if f.weighted else "none"
        lines.append(f"| {f.name} | {f.scores} | {weights} | {_number(f.value)} | {span} | {f.unit} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scenarios.quality", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per measurement")
    p.add_argument("--batch", type=int, default=1000, help="rows per add() call")
    p.add_argument("--repeats", type=int, default=5, help="rounds per figure (median and range)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.rows < 48 or args.batch < 1 or args.repeats < 1:
        print("quality: error: --rows must be >= 48, --batch and --repeats >= 1", file=sys.stderr)
        return 2
    figures = measure(args.rows, args.batch, args.repeats)
    print(markdown(figures), end="")
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
