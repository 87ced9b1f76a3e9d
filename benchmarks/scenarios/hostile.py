"""Hostile input against `sibyl serve` (embedded example store): server cost per request form and size, health
latency during each request, and a steady single-row load's p99 while another client sends maximal legal requests.
HOSTILE_SIBYL_PATH=DIR serves DIR's sibyl instead (e.g. an export of the code before a change).

    python -m benchmarks.scenarios.hostile --out hostile.json               # every case at 1 KB, 1 MB, 64 MB
    python -m benchmarks.scenarios.hostile --sizes 1k,1m --only map,dense    # a subset
    python -m benchmarks.scenarios.hostile --p99 --p99-offload 0             # the p99 run; 0 = server default

Requests are built as wire bytes (sibyl's protos; V2 bytes are what tritonclient sends) and sent through a raw
unary stub. Per case: client-observed wall time (max over repeats), server CPU per call (utime+stime of the
server process from /proc, 10 ms ticks, averaged over repeats), status codes, and the slowest of the health
checks a second thread sends every 5 ms during the case (2 s deadline; a failed one counts as 2 s). A case whose
call times out or whose health checks fail restarts the server before the next case. Numbers, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.load.workload import request_dense, request_features
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.process.banner import parse_serving_line
from sibyl.v1.predict_pb2 import DenseRows, FeatureRow, FloatVector, PredictRequest

PREDICT = "/sibyl.v1.PredictionService/Predict"
INFER = "/inference.GRPCInferenceService/ModelInfer"
SIZES = {"1k": 1_000, "1m": 1_000_000, "16m": 16_000_000, "32m": 32_000_000, "64m": 64_000_000}
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
PREDICTOR = "example"
Tensor = v2.ModelInferRequest.InferInputTensor


# ---- wire bytes (for counts the protobuf API would take minutes to build)
def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """One length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def repeated(number: int, payload: bytes, size: int) -> bytes:
    """As many copies of one length-delimited field as fit in `size` bytes."""
    one = field_bytes(number, payload)
    return one * max(1, size // len(one))


def v1(body: bytes) -> bytes:
    return PredictRequest(predictor=PREDICTOR).SerializeToString() + body


def v2_request(inputs: list[Tensor], raw: list[bytes] | None = None) -> bytes:
    return v2.ModelInferRequest(model_name=PREDICTOR, inputs=inputs, raw_input_contents=raw or []).SerializeToString()


# ---- cases: name -> (form, method, builder(size) -> bytes)
def map_vector(size: int) -> bytes:
    width = max(1, (size - 64) // 4)
    row = FeatureRow(vectors={"consumer_emb": FloatVector(values=np.ones(width, np.float32))})
    return PredictRequest(predictor=PREDICTOR, rows=[row]).SerializeToString()


def map_scalars(size: int) -> bytes:
    """Rows with every feature of the model (legal up to server.max_rows rows)."""
    one = len(request_features(PREDICTOR, "gbdt@1", 10)) / 10
    return request_features(PREDICTOR, "gbdt@1", max(1, int(size / one)))


def map_sparse(size: int) -> bytes:
    """Each row a feature of its own: rows x distinct names cells, nearly all absent."""
    rows = min(10_000, max(1, size // 24))
    return PredictRequest(
        predictor=PREDICTOR, rows=[FeatureRow(features={f"f{i}": 1.0}) for i in range(rows)]
    ).SerializeToString()


def map_row_entities(size: int) -> bytes:
    rows = min(10_000, max(1, size // 24))
    return PredictRequest(
        predictor=PREDICTOR, rows=[FeatureRow(entities={f"e{i}": "1"}) for i in range(rows)]
    ).SerializeToString()


def map_empty_rows(size: int) -> bytes:
    return v1(repeated(4, b"", size))


def map_duplicate_keys(size: int) -> bytes:
    """One row whose features map repeats one key on the wire (the parsed map has one entry)."""
    entry = field_bytes(1, b"a") + b"\x15" + struct.pack("<f", 1.0)
    return v1(field_bytes(4, repeated(1, entry, size)))


def dense_legal(size: int) -> bytes:
    rows = max(1, min(10_000, size // 64))
    return request_dense(PREDICTOR, "gbdt@1", rows)


def dense_late_duplicate(size: int) -> bytes:
    """Distinct names, then the first one again: quadratic with names.count."""
    n = max(2, size // 12)
    names = [f"c{i}" for i in range(n)] + ["c0"]
    return PredictRequest(
        predictor=PREDICTOR, dense=DenseRows(feature_names=names, values=b"\0" * 4 * len(names), num_rows=1)
    ).SerializeToString()


def dense_no_columns(size: int) -> bytes:
    return PredictRequest(predictor=PREDICTOR, dense=DenseRows(num_rows=10_000)).SerializeToString()


def dense_huge_rows(size: int) -> bytes:
    return PredictRequest(
        predictor=PREDICTOR, dense=DenseRows(feature_names=["distance_km"], num_rows=2**32 - 1)
    ).SerializeToString()


def v2_typed_legal(size: int) -> bytes:
    rows = max(1, min(10_000, size // 80))
    contents = v2.InferTensorContents(fp32_contents=np.ones(rows * 16, np.float32))
    return v2_request([Tensor(name="input", datatype="FP32", shape=[rows, 16], contents=contents)])


def v2_huge_shape(size: int) -> bytes:
    return v2_request([Tensor(name="x", datatype="FP32", shape=[2**32, 2**32])])


def v2_zero_rows_wide(size: int) -> bytes:
    return v2_request([Tensor(name="x", datatype="FP32", shape=[0, 10**6])])


def v2_overflow_shape(size: int) -> bytes:
    return v2_request([Tensor(name="x", datatype="FP32", shape=[2**62, 4])])


def v2_many_inputs(size: int) -> bytes:
    one = Tensor(name="x", datatype="FP32", shape=[1], contents=v2.InferTensorContents(fp32_contents=[1.0]))
    n = max(1, size // (one.ByteSize() + 6))
    contents = v2.InferTensorContents(fp32_contents=[1.0])
    return v2_request([Tensor(name=f"x{i}", datatype="FP32", shape=[1], contents=contents) for i in range(n)])


def v2_duplicate_inputs(size: int) -> bytes:
    one = Tensor(name="distance_km", datatype="FP32", shape=[1], contents=v2.InferTensorContents(fp32_contents=[1]))
    return v2_request([]) + repeated(5, one.SerializeToString(), size)


def v2_raw_legal(size: int) -> bytes:
    rows = max(1, min(10_000, size // 64))
    return v2_request([Tensor(name="input", datatype="FP32", shape=[rows, 16])], [np.ones(rows * 16, "<f4").tobytes()])


def v2_raw_many_inputs(size: int) -> bytes:
    n = max(1, size // 30)
    return v2_request([Tensor(name=f"x{i}", datatype="FP32", shape=[1]) for i in range(n)], [b"\0\0\0\0"] * n)


def v2_raw_wrong_length(size: int) -> bytes:
    return v2_request([Tensor(name="input", datatype="FP32", shape=[10_000, 16])], [b"\0" * max(1, size - 64)])


def v2_bytes_raw_empty(size: int) -> bytes:
    """BYTES raw contents of size/4 zero-length elements (4-byte prefixes), declared as that many rows."""
    n = max(1, (size - 64) // 4)
    return v2_request([Tensor(name="consumer_id", datatype="BYTES", shape=[n])], [b"\0\0\0\0" * n])


def v2_bytes_typed_empty(size: int) -> bytes:
    n = max(1, (size - 64) // 2)
    body = field_bytes(1, b"consumer_id") + field_bytes(2, b"BYTES") + b"\x18" + varint(n)
    body += field_bytes(5, repeated(8, b"", size))
    return v2_request([]) + field_bytes(5, body)


def v2_bytes_legal(size: int) -> bytes:
    n = max(1, min(10_000, (size - 64) // 8))
    payload = b"".join(struct.pack("<I", len(s)) + s for s in (str(i).encode() for i in range(n)))
    return v2_request([Tensor(name="consumer_id", datatype="BYTES", shape=[n])], [payload])


CASES: dict[str, tuple[str, str, Callable[[int], bytes]]] = {
    "map-vector": ("map", PREDICT, map_vector),
    "map-scalars": ("map", PREDICT, map_scalars),
    "map-sparse": ("map", PREDICT, map_sparse),
    "map-row-entities": ("map", PREDICT, map_row_entities),
    "map-empty-rows": ("map", PREDICT, map_empty_rows),
    "map-duplicate-keys": ("map", PREDICT, map_duplicate_keys),
    "dense-legal": ("dense", PREDICT, dense_legal),
    "dense-late-duplicate": ("dense", PREDICT, dense_late_duplicate),
    "dense-no-columns": ("dense", PREDICT, dense_no_columns),
    "dense-huge-rows": ("dense", PREDICT, dense_huge_rows),
    "v2-typed-legal": ("v2-typed", INFER, v2_typed_legal),
    "v2-huge-shape": ("v2-typed", INFER, v2_huge_shape),
    "v2-zero-rows-wide": ("v2-typed", INFER, v2_zero_rows_wide),
    "v2-overflow-shape": ("v2-typed", INFER, v2_overflow_shape),
    "v2-many-inputs": ("v2-typed", INFER, v2_many_inputs),
    "v2-duplicate-inputs": ("v2-typed", INFER, v2_duplicate_inputs),
    "v2-raw-legal": ("v2-raw", INFER, v2_raw_legal),
    "v2-raw-many-inputs": ("v2-raw", INFER, v2_raw_many_inputs),
    "v2-raw-wrong-length": ("v2-raw", INFER, v2_raw_wrong_length),
    "v2-bytes-raw-empty": ("v2-bytes", INFER, v2_bytes_raw_empty),
    "v2-bytes-typed-empty": ("v2-bytes", INFER, v2_bytes_typed_empty),
    "v2-bytes-legal": ("v2-bytes", INFER, v2_bytes_legal),
}
FIXED_SIZE = {"v2-huge-shape", "v2-zero-rows-wide", "v2-overflow-shape", "dense-no-columns", "dense-huge-rows"}


# ---- the server
@dataclass
class Server:
    proc: subprocess.Popen[str]
    target: str

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until the server burns under 5% of a core (shadows and records of the last case done), at most timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = self.cpu_s()
            time.sleep(0.2)
            if self.cpu_s() - before < 0.011:  # one 10 ms tick in 200 ms
                return

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextlib.contextmanager
def sibyl_serve(env: dict[str, str] | None = None) -> Iterator[Server]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SIBYL_")}
    full.update(SIBYL_PREDLOG__SINK="none", SIBYL_LOG_LEVEL="WARNING", SIBYL_HTTP__PORT="0", **(env or {}))
    command = [sys.executable, "-m", "sibyl", "serve", "--port", "0", "--metrics-port", "0"]
    cwd = None
    if os.environ.get("HOSTILE_SIBYL_PATH"):  # another checkout's sibyl (e.g. before a change), run from elsewhere
        full["PYTHONPATH"], cwd = os.environ["HOSTILE_SIBYL_PATH"], "/"
    log = open(os.environ.get("HOSTILE_SERVER_LOG", os.devnull), "a")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(command, env=full, stdout=subprocess.PIPE, stderr=log, text=True, cwd=cwd)
    try:
        assert proc.stdout is not None
        serving = parse_serving_line(proc.stdout.readline())
        if serving is None:
            raise RuntimeError("sibyl serve did not print its serving line")
        yield Server(proc, f"127.0.0.1:{serving.port}")
    finally:
        proc.kill()  # a stalled server ignores SIGTERM: its loop never runs the handler
        proc.wait(10)
        log.close()


def _probe(target: str, ready: Any, stop: Any, out: Any) -> None:
    """In its own process, so the client's GIL (serializing 64 MB) never delays a check."""
    worst, failed, checks = 0.0, 0, 0
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with contextlib.suppress(grpc.RpcError):  # connected before the case starts
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5.0)
        ready.set()
        while not stop.is_set():
            start = time.perf_counter()
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
            except grpc.RpcError:
                failed += 1
            worst = max(worst, time.perf_counter() - start)
            checks += 1
            stop.wait(0.005)
    out.put((worst, failed, checks))


class HealthProbe:
    """Health checks every 5 ms from a separate process while a case runs; worst latency, failures."""

    def __init__(self, target: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=_probe, args=(target, self._ready, self._stop, self._out), daemon=True)
        self.worst_s, self.failed, self.checks = 0.0, 0, 0

    def __enter__(self) -> HealthProbe:
        self._proc.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.worst_s, self.failed, self.checks = self._out.get(timeout=30)
        self._proc.join(10)


@dataclass
class CaseResult:
    case: str
    form: str
    size: str
    bytes: int
    calls: int
    codes: dict[str, int] = field(default_factory=dict)
    wall_max_ms: float = 0.0
    cpu_per_call_ms: float = 0.0
    health_worst_ms: float = 0.0
    health_failed: int = 0
    rss_after_mib: float = 0.0
    detail: str = ""


def run_case(server: Server, name: str, size_name: str, timeout_s: float) -> CaseResult:
    form, method, build = CASES[name]
    data = build(SIZES[size_name])
    repeats = 20 if len(data) <= 10_000 else 5 if len(data) <= 2_000_000 else 2
    result = CaseResult(name, form, size_name, len(data), repeats)
    codes: Counter[str] = Counter()
    with grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(method)
        if (
            len(data) <= 2_000_000 and name not in FIXED_SIZE
        ):  # warm-up: first-call costs (imports, arenas) are not the case's
            with contextlib.suppress(grpc.RpcError):
                call(data, timeout=timeout_s)
        server.wait_idle()
        with HealthProbe(server.target) as probe:
            cpu0 = server.cpu_s()
            for _ in range(repeats):
                start = time.perf_counter()
                try:
                    call(data, timeout=timeout_s)
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1  # type: ignore[attr-defined]
                    result.detail = (exc.details() or "")[:160]  # type: ignore[attr-defined]
                result.wall_max_ms = max(result.wall_max_ms, (time.perf_counter() - start) * 1000)
                if "DEADLINE_EXCEEDED" in codes:
                    break
            result.cpu_per_call_ms = (server.cpu_s() - cpu0) * 1000 / sum(codes.values())
        result.calls = sum(codes.values())
        result.health_worst_ms = probe.worst_s * 1000
        result.health_failed = probe.failed
    result.codes = dict(codes)
    result.rss_after_mib = server.rss_mib()
    return result


def run_cases(sizes: list[str], only: list[str], timeout_s: float, env: dict[str, str]) -> list[CaseResult]:
    results = []
    names = [n for n in CASES if not only or any(n.startswith(o) or CASES[n][0] == o for o in only)]
    pending = [(n, s) for n in names for s in (["1k"] if n in FIXED_SIZE else sizes)]
    while pending:
        with sibyl_serve(env) as server:
            while pending:
                name, size = pending.pop(0)
                result = run_case(server, name, size, timeout_s)
                results.append(result)
                print(json.dumps(asdict(result)), flush=True)
                if result.health_failed or "DEADLINE_EXCEEDED" in result.codes or server.proc.poll() is not None:
                    break  # a stalled or dead server: start a fresh one for the next case
    return results


# ---- p99 of a steady single-row load while another client sends maximal legal requests
def _heavy_sender(target: str, data: bytes, method: str, stop_at: float, out: multiprocessing.Queue) -> None:
    codes: Counter[str] = Counter()
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(method)
        while time.monotonic() < stop_at:
            try:
                call(data, timeout=30)
                codes["OK"] += 1
            except grpc.RpcError as exc:
                codes[exc.code().name] += 1  # type: ignore[attr-defined]
    out.put(dict(codes))


def steady_load(target: str, rate: float, duration_s: float) -> dict[str, float]:
    """Open loop: single-row Predict due every 1/rate s; latency from the intended send time."""
    import asyncio

    data = request_features(PREDICTOR, "gbdt@1", 1)

    async def main() -> list[float]:
        latencies: list[float] = []
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary(PREDICT)
            await call(data, timeout=5)
            loop = asyncio.get_running_loop()
            t0, n = loop.time(), int(rate * duration_s)

            async def one(i: int) -> None:
                intended = t0 + i / rate
                await asyncio.sleep(max(0.0, intended - loop.time()))
                try:
                    await call(data, timeout=10)
                    latencies.append(loop.time() - intended)
                except grpc.aio.AioRpcError:
                    latencies.append(float("inf"))

            await asyncio.gather(*(one(i) for i in range(n)))
        return latencies

    lat = np.asarray(asyncio.run(main())) * 1000
    ok = lat[np.isfinite(lat)]
    return {
        "calls": float(len(lat)),
        "failed": float(len(lat) - len(ok)),
        "p50_ms": float(np.percentile(ok, 50)),
        "p99_ms": float(np.percentile(ok, 99)),
        "max_ms": float(ok.max()),
    }


def run_p99(env: dict[str, str], heavy: str, rate: float, duration_s: float) -> dict[str, object]:
    heavy_data, method = {
        "map": (request_features(PREDICTOR, "gbdt@1", 10_000), PREDICT),
        "dense": (request_dense(PREDICTOR, "gbdt@1", 10_000), PREDICT),
        "v2-raw": (v2_raw_legal(640_000), INFER),
    }[heavy]
    out: dict[str, object] = {"heavy": heavy, "heavy_bytes": len(heavy_data), "rate": rate, "env": env}
    with sibyl_serve(env) as server:
        out["alone"] = steady_load(server.target, rate, duration_s)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        sender = ctx.Process(
            target=_heavy_sender, args=(server.target, heavy_data, method, time.monotonic() + duration_s + 1, queue)
        )
        sender.start()
        time.sleep(0.5)
        out["with_heavy"] = steady_load(server.target, rate, duration_s)
        sender.join(duration_s + 60)
        out["heavy_codes"] = queue.get(timeout=5) if not queue.empty() else {}
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1k,1m,64m", help="comma-separated: 1k, 1m, 16m, 32m, 64m")
    parser.add_argument("--only", default="", help="comma-separated case names or forms (map, dense, v2-...)")
    parser.add_argument("--timeout", type=float, default=60.0, help="client deadline per call, seconds")
    parser.add_argument("--p99", action="store_true", help="run the p99-under-heavy-load measurement instead")
    parser.add_argument("--p99-heavy", default="map", choices=["map", "dense", "v2-raw"])
    parser.add_argument("--p99-offload", type=int, default=0, help="server.decode_offload_bytes; 0 = default")
    parser.add_argument("--p99-rate", type=float, default=100.0)
    parser.add_argument("--p99-seconds", type=float, default=10.0)
    parser.add_argument("--max-message-mib", type=int, default=0, help="server.max_message_bytes; 0 = default")
    parser.add_argument("--out", default="", help="also write the results here as JSON")
    args = parser.parse_args(argv)
    env = {"SIBYL_SERVER__DECODE_OFFLOAD_BYTES": str(args.p99_offload)} if args.p99_offload else {}
    if args.max_message_mib:
        env["SIBYL_SERVER__MAX_MESSAGE_BYTES"] = str(args.max_message_mib * 2**20)
    if args.p99:
        document: object = run_p99(env, args.p99_heavy, args.p99_rate, args.p99_seconds)
    else:
        sizes = [s for s in args.sizes.split(",") if s]
        only = [o for o in args.only.split(",") if o]
        document = [asdict(r) for r in run_cases(sizes, only, args.timeout, env)]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(document, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
