"""Batch scoring throughput, 1M rows of the example (gbdt@1, every feature in the table): rows per second for
onnxruntime alone on the same float32 matrix (the floor), BatchScorer in-process, `sibyl score --in-process`,
`sibyl score --target` (one `sibyl serve`, one worker, no prediction log), Spark local[2] (mapInArrow) and Ray
local (num_cpus=2, the default pool of 1-2 actors);
peak memory (VmHWM) of each process that scores. Each case runs in a fresh subprocess, one after the other.

python -m benchmarks.scenarios.batch [--rows 1000000] [--only floor,scorer,...] [--repeat 3] [--out DIR]

Engine and scorer times exclude start-up (session, model load; Spark's and Ray's start-up is reported apart);
the `sibyl score` cases are the whole command's wall time (interpreter, model load, reading and writing the
Parquet files). Every case reads the same Parquet file, or holds the same table in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE

CASES = ("floor", "floor-2t", "scorer", "scorer-2t", "scorer-redis", "cli-in-process", "cli-target", "spark", "ray")
STORE_URL = f"file://{EXAMPLE_STORE}"
SAMPLE = Path(EXAMPLE_FEATURES).parent / "sample.csv"
CHUNK = 65_536


def make_data(rows: int, path: Path) -> None:
    """sample.csv's rows drawn at random to `rows`, with consumer_id (1-200) and store_id (1-100), as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    header = SAMPLE.read_text().splitlines()[0].split(",")
    sample = np.loadtxt(SAMPLE, delimiter=",", skiprows=1)
    rng = np.random.default_rng(1)
    data = sample[rng.integers(0, len(sample), rows)]
    columns = {name: pa.array(data[:, j]) for j, name in enumerate(header)}
    columns["consumer_id"] = pa.array(rng.integers(1, 201, rows))
    columns["store_id"] = pa.array(rng.integers(1, 101, rows))
    pq.write_table(pa.table(columns), path, row_group_size=CHUNK)


def _peak_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _procs(needle: str) -> list[int]:
    """Processes whose command line contains needle (Spark's Python workers, Ray's actors)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def _table(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path)


def case_floor(path: Path, threads: int) -> dict[str, Any]:
    """onnxruntime alone: the model's float32 matrix (manifest order) in chunks of CHUNK rows, back to back."""
    import onnxruntime as ort

    from sibyl.models.runtime import session_options

    manifest = json.loads((EXAMPLE_STORE / "models/gbdt/1/manifest.json").read_text())
    columns = [
        c
        for f in manifest["inputs"]
        for c in ([f["name"]] if f["dim"] == 1 else [f"{f['name']}[{i}]" for i in range(f["dim"])])
    ]
    table = _table(path)
    matrix = np.column_stack([table.column(c).to_numpy() for c in columns]).astype(np.float32)
    session = ort.InferenceSession(
        str(EXAMPLE_STORE / "models/gbdt/1/model.onnx"), session_options(threads), providers=["CPUExecutionProvider"]
    )
    session.run(["probabilities"], {"input": matrix[:2]})
    start = time.perf_counter()
    for i in range(0, len(matrix), CHUNK):
        session.run(["probabilities"], {"input": matrix[i : i + CHUNK]})
    return {"seconds": time.perf_counter() - start, "rows": len(matrix)}


def case_scorer(path: Path, threads: int, redis: bool = False) -> dict[str, Any]:
    """BatchScorer.score on the whole table (chunks of CHUNK rows); redis: the consumer features are dropped from
    the table and read from a real local Redis instead (one pipelined read per chunk of distinct entities)."""
    from sibyl.batch import BatchScorer

    table = _table(path)
    features: dict[str, Any] = {"backend": "none"}
    stack: Any = None
    if redis:
        from benchmarks.scenarios.redis_fill import load_features
        from tests.support.servers import RedisServer

        stack = RedisServer().start()
        load_features(stack.url)
        features = {"backend": "redis", "url": stack.url}
        table = table.drop_columns([c for c in table.column_names if c.startswith("consumer_") and c != "consumer_id"])
    try:
        scorer = BatchScorer.load(STORE_URL, "gbdt@1", features=features, intra_op_threads=threads, chunk_rows=CHUNK)
        start = time.perf_counter()
        out = scorer.score(table)
        seconds = time.perf_counter() - start
        defaulted = sum(len(d) > 0 for d in out.column("defaulted").to_pylist()) if redis else 0
        return {"seconds": seconds, "rows": out.num_rows, "rows_defaulted": defaulted}
    finally:
        if stack is not None:
            stack.close()


def _cli(path: Path, extra: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp()) / "scored.parquet"
    command = [sys.executable, "-m", "sibyl", "score", str(path), str(out), "--predictor", "example"]
    command += ["--batch-rows", "10000", "--quiet", "--id-columns", "consumer_id,store_id", *extra]
    full_env = {**os.environ, "SIBYL_FEATURES__BACKEND": "none", "SIBYL_LOG_LEVEL": "WARNING", **(env or {})}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=full_env)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "rows": _table(out).num_rows, "peak_mb_client": peak, "wall": True}


def case_cli_in_process(path: Path) -> dict[str, Any]:
    return _cli(path, ["--in-process", "--store", STORE_URL])


def case_cli_target(path: Path) -> dict[str, Any]:
    from benchmarks.scenarios.servers import sibyl_server

    with sibyl_server("plain", EXAMPLE_STORE, env={"SIBYL_PREDLOG__SINK": "none"}) as server:
        result = _cli(path, ["--target", server.target])
        result["peak_mb_server"] = _peak_mb(server.pid) if server.pid else 0.0
    return result


def case_spark(path: Path) -> dict[str, Any]:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    from sibyl.batch import spark as sibyl_spark

    begin = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000").getOrCreate()
    )  # fmt: skip
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter() - begin
    try:
        df = spark.read.parquet(str(path))
        runs = []
        for _ in range(2):  # the first run starts the Python workers and builds their scorers: cold, then warm
            begin = time.perf_counter()
            sibyl_spark.score(df, STORE_URL, "example").write.format("noop").mode("overwrite").save()
            runs.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        df.mapInArrow(_identity, df.schema).write.format("noop").mode("overwrite").save()
        hand_off = time.perf_counter() - begin  # Arrow to Python and back, no scoring: the engine's own share
        workers = _procs("pyspark.daemon") + _procs("pyspark/daemon")
        peaks = [_peak_mb(p) for p in set(workers)]
        jvm = max((_peak_mb(p) for p in _procs("org.apache.spark.deploy.SparkSubmit")), default=0.0)
        return {
            "seconds": runs[1], "rows": df.count(), "session_s": started, "cold_s": runs[0],
            "identity_map_s": hand_off, "peak_mb_python_workers": peaks, "peak_mb_jvm": jvm,
        }  # fmt: skip
    finally:
        spark.stop()


def _identity(batches: Any) -> Any:
    yield from batches


def case_ray(path: Path) -> dict[str, Any]:
    import ray
    import ray.data

    from sibyl.batch import ray as sibyl_ray

    begin = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter() - begin
    try:
        runs, rows = [], 0
        for _ in range(2):  # each run starts its actors; the second finds Ray's worker processes warm
            begin = time.perf_counter()
            ds = ray.data.read_parquet(str(path))
            rows = sibyl_ray.score(ds, STORE_URL, "example").count()  # default pool: 1-2 actors on 2 CPUs
            runs.append(time.perf_counter() - begin)
        peaks = [_peak_mb(p) for p in _procs("ray::")]
        return {
            "seconds": runs[1], "rows": rows, "session_s": started, "cold_s": runs[0],
            "peak_mb_ray_workers": sorted(peaks)[-3:],
        }  # fmt: skip
    finally:
        ray.shutdown()


def run_case(name: str, path: Path) -> dict[str, Any]:
    cases = {
        "floor": lambda: case_floor(path, 1),
        "floor-2t": lambda: case_floor(path, 2),
        "scorer": lambda: case_scorer(path, 1),
        "scorer-2t": lambda: case_scorer(path, 2),
        "scorer-redis": lambda: case_scorer(path, 1, redis=True),
        "cli-in-process": lambda: case_cli_in_process(path),
        "cli-target": lambda: case_cli_target(path),
        "spark": lambda: case_spark(path),
        "ray": lambda: case_ray(path),
    }
    result = cases[name]()
    result.setdefault("peak_mb", _peak_mb())
    return {"case": name, **result, "rows_per_s": result["rows"] / result["seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", help=f"comma-separated cases of {','.join(CASES)}")
    parser.add_argument("--out", help="directory for the data file and results.json (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1, help="run the cases N times, interleaved (report: median)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this subprocess
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, Path(args.data))), flush=True)
        return 0
    # Every process of every case (Spark's Python workers, Ray's actors, sibyl score) imports this checkout.
    root = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    out = Path(args.out or tempfile.mkdtemp(prefix="sibyl-batch-"))
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"example-{args.rows}.parquet"
    if not data.exists():
        make_data(args.rows, data)
    results = []
    names = args.only.split(",") if args.only else list(CASES)
    for name in names * args.repeat:
        command = [sys.executable, "-m", "benchmarks.scenarios.batch", "--case", name, "--data", str(data)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(lines[-1]))
        r = results[-1]
        print(
            f"{name:15s} {r['rows_per_s']:>12,.0f} rows/s  {r['seconds']:7.2f} s  {json.dumps({k: v for k, v in r.items() if k.startswith(('peak', 'session'))})}"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    for name in names if args.repeat > 1 else []:
        rates = sorted(r["rows_per_s"] for r in results if r["case"] == name)
        if rates:
            print(
                f"{name:15s} median {rates[len(rates) // 2]:>10,.0f} rows/s (min {rates[0]:,.0f}, max {rates[-1]:,.0f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
