"""Traffic for a running server from the example's synthetic world, and each row's outcome reported after a delay.

    python examples/simulate.py --calls 2000 --delay-s 2 --monitor 127.0.0.1:9101

Each call asks the `example` predictor for one to three rows of a random consumer (context) and random stores (rows),
with request features drawn as the models' training data was (examples/delivery_data.py). Whether each order then
converts is drawn from the same ground truth, using the consumer's and store's features from the bundled feature file,
and reported with sibyl.client's report_outcomes a random 0..--delay-s seconds later. With --monitor it waits until
`sibyl monitor` has joined every outcome, so `sibyl models compare example` right after sees them all. The models'
holdout AUCs (their manifests' metadata) are what a few thousand rows should roughly recover.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from delivery_data import logit, request_features

from sibyl.client import Client
from sibyl.config import EXAMPLE_FEATURES

REQUEST = ["distance_km", "hour_of_day", "is_weekend", "promo_pct"]


def entity_tables() -> dict[str, dict[str, dict[str, Any]]]:
    """entity -> id -> features, from the bundled feature file (what the server's memory store serves)."""
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for line in Path(EXAMPLE_FEATURES).read_text().splitlines():
        if line.strip():
            e = json.loads(line)
            tables.setdefault(e["entity"], {})[e["id"]] = e["features"]
    return tables


def truth(consumer: dict[str, Any], stores: list[dict[str, Any]], request: dict[str, np.ndarray]) -> np.ndarray:
    """P(the order converts) for each row, as the training data drew it."""
    n = len(stores)
    columns: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in request.items()}
    for name, value in consumer.items():
        columns[name] = np.repeat(np.asarray(value, float)[None, ...], n, axis=0)
    for name in stores[0]:
        columns[name] = np.asarray([s[name] for s in stores], float)
    return 1 / (1 + np.exp(-logit(columns)))


def joined(monitor: str, wait_s: float = 30.0) -> float:
    """The monitor's count of joined outcomes; waits up to wait_s for it to answer (it may be starting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = urllib.request.urlopen(f"http://{monitor}/metrics", timeout=5).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    for line in text.splitlines():
        if line.startswith('sibyl_monitor_outcomes_total{result="joined"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="127.0.0.1:50051", help="the server's gRPC address")
    p.add_argument("--calls", type=int, default=2000, help="Predict calls to send (default 2000)")
    p.add_argument("--delay-s", type=float, default=2.0, help="outcomes arrive up to this long after (default 2)")
    p.add_argument("--monitor", help="HOST:PORT of sibyl monitor's metrics: wait until it joined every outcome")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    tables = entity_tables()
    consumers, stores = sorted(tables["consumer_id"]), sorted(tables["store_id"])
    due: list[tuple[float, str, int, float]] = []  # (report at, prediction id, row, outcome)
    reported = 0
    before = joined(args.monitor) if args.monitor else 0.0
    with Client(args.target, timeout_s=5.0) as client:
        for _ in range(args.calls):
            n = int(rng.integers(1, 4))
            consumer = str(rng.choice(consumers))
            store_ids = [str(s) for s in rng.choice(stores, n)]
            request = request_features(rng, n)
            rows = {**{k: request[k].tolist() for k in REQUEST}, "store_id": store_ids}
            prediction = client.predict("example", rows, context={"consumer_id": consumer})
            p_true = truth(tables["consumer_id"][consumer], [tables["store_id"][s] for s in store_ids], request)
            at = time.monotonic() + rng.random() * args.delay_s
            for row, converted in enumerate((rng.random(n) < p_true).tolist()):
                heapq.heappush(due, (at, prediction.prediction_id, row, float(converted)))
            reported += _report_due(client, due, time.monotonic())
        while due:
            time.sleep(max(0.0, due[0][0] - time.monotonic()))
            reported += _report_due(client, due, time.monotonic())
    print(f"sent {args.calls} calls, reported {reported} outcomes", flush=True)
    if args.monitor:
        deadline = time.monotonic() + 120
        while joined(args.monitor) - before < reported:
            if time.monotonic() > deadline:
                print(f"sibyl monitor joined {joined(args.monitor) - before:.0f} of {reported}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print(f"sibyl monitor joined all {reported}", flush=True)
    return 0


def _report_due(client: Client, due: list[tuple[float, str, int, float]], now: float) -> int:
    ready = []
    while due and due[0][0] <= now:
        _, pid, row, value = heapq.heappop(due)
        ready.append({"prediction_id": pid, "row": row, "value": value})
    return client.report_outcomes(ready) if ready else 0


if __name__ == "__main__":
    raise SystemExit(main())
