"""`python -m benchmarks.scenarios.outcomes`: server CPU per OutcomeService.Report call, batches of 1 and 100.

One `sibyl serve` per variant (cost.py's: `defaults` writes outcomes to the file beside the log, `kafka` sends
them to a real tansu broker, `nolog` refuses them: the floor of admission, parsing and checking), a closed loop
(c=4 by default) of Report calls whose outcomes are valid (ids as sibyl makes them, observed_at set), `--repeats`
runs of `--duration` s; prints the median (min-max) server-tree CPU µs per call (/proc, benchmarks.load.cpu), the
client's, and p50/p99. A native Predict of 1 row is measured alongside (`--reference`) as the yardstick: the
same server, the same loop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

from benchmarks.load.workload import make_store
from benchmarks.scenarios.cost import NATIVE, VARIANTS, Cell, measure, payload, start
from sibyl.v1.outcome_pb2 import Outcome, ReportOutcomesRequest

REPORT = "/sibyl.v1.OutcomeService/Report"


def report_body(n: int) -> bytes:
    now = time.time_ns()
    outcomes = [
        Outcome(prediction_id=os.urandom(16).hex(), row=i % 4, value=float(i % 2), observed_at_unix_nanos=now)
        for i in range(n)
    ]
    return ReportOutcomesRequest(outcomes=outcomes).SerializeToString()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default="defaults,kafka", help=f"comma-separated of {', '.join(VARIANTS)}")
    p.add_argument("--batches", default="1,100", help="outcomes per Report call")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-reference", dest="reference", action="store_false", help="skip the 1-row Predict")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    cells: list[tuple[str, str, bytes]] = [(f"report n={n:<4}", REPORT, report_body(n)) for n in batches]
    if args.reference:
        cells.append(("predict rows=1", NATIVE, payload("native", 1)[1]))
    with tempfile.TemporaryDirectory(prefix="sibyl-outcomes-") as tmp:
        store = make_store(Path(tmp) / "store")
        for variant in args.variants.split(","):
            with contextlib.ExitStack() as stack:
                server = stack.enter_context(start(variant, store))
                for label, method, body in cells:
                    cell = Cell()
                    for _ in range(args.repeats):
                        result = measure(server, method, body, args, None)
                        if result.errors:
                            print(f"  {variant} {label}: errors {dict(result.errors)}")
                        cell.add(result)
                    print(cell.line(f"{variant:9} {label}"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
