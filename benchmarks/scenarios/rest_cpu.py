"""Server CPU per KServe V2 REST infer call: `sibyl serve` on its defaults (the embedded example store,
predictor "example"), a client sending JSON infer calls of 1 and 100 rows to 127.0.0.1 over kept-alive
http.client connections (c=1, and c=4 threads), the server's process-tree CPU (/proc, load.cpu) read
before and after each run and divided by the calls. Bounded: `--calls` per run (default 3,000), `--runs`
per shape (default 3, the median is reported), and a wall-clock cap per run (`--max-run-s`).

    python -m benchmarks.scenarios.rest_cpu                     # 1 and 100 rows, c=1 and c=4, 3 x 3,000 calls
    python -m benchmarks.scenarios.rest_cpu --rows 1 --concurrency 1 --calls 500 --runs 1
    python -m benchmarks.scenarios.rest_cpu --binary            # the binary-data extension instead of JSON
    python -m benchmarks.scenarios.rest_cpu --sibyl-path DIR    # serve DIR's sibyl (e.g. an export of a commit)

Numbers, not a test: other processes on the machine add to the server's wall time but not to its CPU.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass

from benchmarks.load.cpu import tree_cpu_s
from benchmarks.load.workload import PRIMARY, manifest, sample_matrix
from benchmarks.scenarios.servers import ServerProcess
from sibyl.process.banner import parse_serving_line

PREDICTOR = "example"  # the embedded store's predictor (gbdt@1, shadow mlp@1)
WARMUP_CALLS = 200


@dataclass(frozen=True)
class Shape:
    rows: int
    concurrency: int


@dataclass
class Result:
    rows: int
    concurrency: int
    calls: int
    cpu_us_per_call: list[float]  # one per run
    wall_s: list[float]

    @property
    def median_us(self) -> float:
        return statistics.median(self.cpu_us_per_call)


def infer_body(rows: int, binary: bool) -> tuple[bytes, dict[str, str]]:
    """One V2 infer request: the sample's rows as the model's whole-row FP32 tensor (as tritonclient.http sends
    it: JSON data, or the binary-data extension)."""
    m = manifest(PRIMARY)
    matrix = sample_matrix(m.columns, rows)
    tensor: dict[str, object] = {"name": m.input_name, "shape": list(matrix.shape), "datatype": "FP32"}
    headers = {"Content-Type": "application/json"}
    if not binary:
        tensor["data"] = matrix.ravel().tolist()
        return json.dumps({"inputs": [tensor]}).encode(), headers
    raw = matrix.astype("<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    doc = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    head = json.dumps(doc).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    return head + raw, headers


def send(port: int, path: str, body: bytes, headers: dict[str, str], calls: int, deadline: float) -> int:
    """`calls` POSTs on one kept-alive connection, until the deadline; each must answer 200. Returns calls sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for done in range(calls):
            if time.monotonic() > deadline:
                return done
            conn.request("POST", path, body, headers)
            reply = conn.getresponse()
            data = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"infer answered {reply.status}: {data[:200]!r}")
        return calls
    finally:
        conn.close()


def run_once(port: int, pid: int, shape: Shape, calls: int, binary: bool, max_run_s: float) -> tuple[float, float]:
    """(server CPU µs per call, wall s) of one run of `calls` calls split across `shape.concurrency` connections."""
    path = f"/v2/models/{PREDICTOR}/infer"
    body, headers = infer_body(shape.rows, binary)
    send(port, path, body, headers, WARMUP_CALLS, time.monotonic() + max_run_s)
    share = [calls // shape.concurrency + (1 if i < calls % shape.concurrency else 0) for i in range(shape.concurrency)]
    sent = [0] * shape.concurrency
    errors: list[BaseException] = []
    deadline = time.monotonic() + max_run_s

    def worker(i: int) -> None:
        try:
            sent[i] = send(port, path, body, headers, share[i], deadline)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(shape.concurrency)]
    cpu0, wall0 = tree_cpu_s(pid), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.monotonic() - wall0, tree_cpu_s(pid) - cpu0
    if errors:
        raise errors[0]
    total = sum(sent)
    if total == 0:
        raise RuntimeError("no call finished within --max-run-s")
    return cpu / total * 1e6, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,100", help="rows per call, comma-separated (default 1,100)")
    parser.add_argument("--concurrency", default="1,4", help="connections, comma-separated (default 1,4)")
    parser.add_argument("--calls", type=int, default=3000, help="calls per run (default 3000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per shape; the median is reported (default 3)")
    parser.add_argument("--max-run-s", type=float, default=120.0, help="wall-clock cap per run (default 120)")
    parser.add_argument("--binary", action="store_true", help="binary-data extension instead of JSON data")
    parser.add_argument("--json", dest="out", default=None, help="also write the results to this file")
    parser.add_argument("--sibyl-path", default=None, help="serve the sibyl package found in this directory")
    args = parser.parse_args(argv)
    shapes = [Shape(int(r), int(c)) for r in args.rows.split(",") for c in args.concurrency.split(",")]
    command = [sys.executable, "-m", "sibyl", "serve", "--port", "0", "--metrics-port", "0", "--http-port", "0"]
    results = []
    env = {"PYTHONPATH": args.sibyl_path} if args.sibyl_path else None
    with ServerProcess(command, env, name="sibyl-rest-cpu") as server:
        serving = parse_serving_line(server.log_path.read_text(errors="replace"))
        if serving is None or not serving.http_port or server.pid is None:
            raise RuntimeError("sibyl serve printed no REST port")
        for shape in shapes:
            result = Result(shape.rows, shape.concurrency, args.calls, [], [])
            for _ in range(args.runs):
                us, wall = run_once(serving.http_port, server.pid, shape, args.calls, args.binary, args.max_run_s)
                result.cpu_us_per_call.append(round(us, 1))
                result.wall_s.append(round(wall, 2))
            results.append(result)
            print(
                f"rows={shape.rows:<4} c={shape.concurrency}  server CPU per call: median {result.median_us:7.1f} µs "
                f"(runs {result.cpu_us_per_call}, wall {result.wall_s} s)",
                flush=True,
            )
    if args.out:
        doc = [asdict(r) | {"median_us": r.median_us} for r in results]
        with open(args.out, "w") as f:
            json.dump({"binary": args.binary, "calls": args.calls, "results": doc}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
