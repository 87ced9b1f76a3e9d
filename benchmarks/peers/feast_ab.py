"""sibyl's Feast-style call (driver ids only, features from Feast's Redis layout) from several checkouts, in turns:
the before/after of a change to the 1-row path, with the clients and data of benchmarks.peers.feast_pipeline.

python -m benchmarks.peers.feast_ab BEFORE AFTER [--repeats 4] [--requests 3000] [--rows 1]

BEFORE and AFTER are checkouts (a `git worktree add /tmp/before COMMIT` will do); each repeat starts
`sibyl serve` from each in turn (its PYTHONPATH the checkout alone), against the same redis-server and the same
materialized Feast repo, warms it up, then times `--requests` V2 REST calls (http.client) and as many gRPC
Predict calls (the sync grpc client), one after another. Prints each run, then per checkout and protocol the
median (min-max) over the repeats of p50 / p99 / p99.9 and CPU per call (server tree and client).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.peers import feast_pipeline as fp
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, PredictResponse
from tests.features.feast_env import run_feast
from tests.support.onnxgen import publish_logistic
from tests.support.servers import RedisServer

WARM_UP = 300  # calls per protocol before timing: connections, caches and the first collections settled


def _one_server(checkout: Path, store: Path, redis_url: str, rows: int, requests: int) -> list[dict[str, Any]]:
    with fp.sibyl_serve(store, redis_url, {"PYTHONPATH": str(checkout)}) as server:
        ids = fp.IDS[:rows]
        rest = fp.SibylRest(server.http_port, ids)
        channel = grpc.insecure_channel(server.target)
        predict = channel.unary_unary(
            fp.PREDICT,
            request_serializer=PredictRequest.SerializeToString,
            response_deserializer=PredictResponse.FromString,
        )
        request = PredictRequest(predictor="p", rows=[FeatureRow(entities={"driver_id": str(i)}) for i in ids])

        def via_grpc() -> object:
            return predict(request, timeout=10)

        for _ in range(WARM_UP):
            rest.scores()
            via_grpc()
        pids = [server.pid or 0]
        out = [fp.timed("rest", rest.scores, requests, pids), fp.timed("grpc", via_grpc, requests, pids)]
        rest.close()
        channel.close()
        if rest.defaulted:
            raise RuntimeError(f"{checkout}: {rest.defaulted} calls defaulted features: the store is not Feast's")
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.feast_ab", description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="source trees to serve from, in this order")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3000, help="timed calls per protocol and run")
    parser.add_argument("--rows", type=int, default=1, choices=range(1, len(fp.IDS) + 1), metavar="1-100")
    args = parser.parse_args(argv)
    for checkout in args.checkouts:
        if not (checkout / "sibyl" / "__init__.py").is_file():
            parser.error(f"{checkout} is not a sibyl checkout (no sibyl/__init__.py)")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis:
        work = Path(tmp)
        address = redis.url.split("//")[1].split("/")[0]
        setup = {"connection": address, "project": "bench", "version": 3, "extra_drivers": len(fp.IDS), "reads": []}
        run_feast(work / "bench", setup)
        catalog = Catalog(FileStore(work / "store"))
        publish_logistic(catalog, "m", "1", inputs=fp.specs_of_driver_stats(), bias=-0.5)
        catalog.promote("p", "m@1")
        for repeat in range(args.repeats):
            for checkout in args.checkouts:
                for result in _one_server(checkout.resolve(), work / "store", redis.url, args.rows, args.requests):
                    runs.setdefault((str(checkout), result["case"]), []).append(result)
                    print(repeat, checkout, result, flush=True)
    print(f"median (min-max) of {args.repeats} repeats, {args.rows} row(s), ms:")
    for (checkout, case), results in runs.items():
        cells = []
        for key in ("p50_ms", "p99_ms", "p99.9_ms", "cpu_ms"):
            values = [r[key] for r in results]
            cells.append(f"{key} {np.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        print(f"{checkout} {case}: " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
