"""`python -m benchmarks.scenarios.cost`: server CPU per call of sibyl alone, quickly, for before/after a cut.

One `sibyl serve` per variant (defaults; `nolog`: SIBYL_PREDLOG__SINK=none; `nofeatures`: the log without
feature values; `kafka`: the log to a real tansu broker; `confluent`: the same through confluent-kafka), a
closed loop at c=8 of V2 ModelInfer (stock tritonclient bytes) and native Predict (map-form rows) at 1 and 100 rows, `--repeats` runs of `--duration` s;
prints the median (min-max) server-tree CPU µs per call (/proc, benchmarks.load.cpu) and the client's.
`--profile DIR` also runs `py-spy record --native` on the server during the first repeat of each cell
(collapsed stacks, `-f raw`: feed them to flamegraph.pl, or sum them with `--summary`).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks.load.client import Job, run_job
from benchmarks.load.workload import PRIMARY, make_store, request_features, v2_request
from benchmarks.scenarios.servers import sibyl_server

VARIANTS = {
    "defaults": ("plain", {}),
    "nolog": ("plain", {"SIBYL_PREDLOG__SINK": "none"}),
    "nofeatures": ("plain", {"SIBYL_PREDLOG__LOG_FEATURES": "false"}),
    "kafka": ("kafka", {}),
    "confluent": ("kafka", {"SIBYL_PREDLOG__KAFKA_CLIENT": "confluent"}),
}
NATIVE = "/sibyl.v1.PredictionService/Predict"
V2 = "/inference.GRPCInferenceService/ModelInfer"


def payload(protocol: str, rows: int) -> tuple[str, bytes]:
    if protocol == "v2":
        return V2, v2_request("bench", PRIMARY, rows)
    return NATIVE, request_features("bench", PRIMARY, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default="defaults,nolog", help=f"comma-separated of {', '.join(VARIANTS)}")
    p.add_argument("--protocols", default="v2,native")
    p.add_argument("--rows", default="1,100")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", help="directory for py-spy flame graphs (one per cell)")
    args = p.parse_args(argv)
    rows = [int(r) for r in args.rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="sibyl-cost-") as tmp:
        store = make_store(Path(tmp) / "store")
        for variant in args.variants.split(","):
            group, env = VARIANTS[variant]
            with sibyl_server(group, store, env=env) as server:
                for protocol in args.protocols.split(","):
                    for n in rows:
                        method, body = payload(protocol, n)
                        cpu, client, rps = [], [], []
                        for i in range(args.repeats):
                            job = Job(
                                server.target,
                                method,
                                body,
                                mode="closed",
                                concurrency=args.concurrency,
                                duration_s=args.duration,
                                warmup_s=1.0,
                                server_pid=server.pid,
                            )
                            spy = None
                            if args.profile and i == 0:
                                out = Path(args.profile) / f"{variant}-{protocol}-{n}.txt"
                                out.parent.mkdir(parents=True, exist_ok=True)
                                spy = subprocess.Popen(
                                    [
                                        "py-spy",
                                        "record",
                                        "--native",
                                        "-f",
                                        "raw",
                                        "-r",
                                        "200",
                                        "-d",
                                        str(int(args.duration + 1)),
                                        "-o",
                                        str(out),
                                        "--pid",
                                        str(server.pid),
                                    ],
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                )
                            result = run_job(job)
                            if spy is not None:
                                with contextlib.suppress(subprocess.TimeoutExpired):
                                    spy.wait(30)
                            if result.errors:
                                print(f"  {variant} {protocol} {n}: errors {dict(result.errors)}")
                            if result.server_cpu_us_per_call is not None:
                                cpu.append(result.server_cpu_us_per_call)
                                client.append(result.client_cpu_s / max(result.ok, 1) * 1e6)
                                rps.append(result.achieved_rps)
                        if cpu:
                            print(
                                f"{variant:10} {protocol:6} rows={n:<4} server CPU/call "
                                f"{statistics.median(cpu):7.0f} µs ({min(cpu):.0f}-{max(cpu):.0f})  "
                                f"client {statistics.median(client):5.0f} µs  {statistics.median(rps):6.0f} req/s",
                                flush=True,
                            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
