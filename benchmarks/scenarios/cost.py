"""`python -m benchmarks.scenarios.cost`: server CPU per call of sibyl alone, quickly, for before/after a cut.

One `sibyl serve` per variant (defaults; `nolog`: SIBYL_PREDLOG__SINK=none; `nofeatures`: the log without
feature values; `kafka`: the log to a real tansu broker; `confluent`: the same through confluent-kafka;
`noverdicts`: SIBYL_METRICS__VERDICTS=false; `lane`: every call's follow-up on the records thread,
SIBYL_SERVER__FOLLOWUP_INLINE_ROWS=0; `echo`: the grpc.aio echo floor instead of sibyl), asking predictor
`--predictor` (bench: the primary alone; bench-shadow: the example's shadow and slices), a closed loop (c=8 by
default) of V2 ModelInfer (stock tritonclient bytes) and native Predict (map-form rows) at 1 and 100 rows,
`--repeats` runs of `--duration` s; prints the median (min-max) server-tree CPU µs per call (/proc,
benchmarks.load.cpu), the client's, and the median p50/p99.
`--threads` also reads each sibyl server's `sibyl_thread_cpu_seconds_total` and `sibyl_requests_total` from its
/metrics before and after every run and prints the CPU µs per call of each thread (the same kernel clocks, both
ends of the same window): what the verdict flusher or a log writer costs, without an A/B across a drifting box. The
flusher works once a second and refreshes rank agreement every 5 s, so runs of 20 s or more keep that rounding small.
`--interleave` runs the variants' repeats in turn (A B, B A, ...), all servers up at once, and prints each variant's
median ratio to the last one over the paired repeats: this box's speed drifts within minutes
(docs/performance.md#the-box-drifts), so a ratio between variants is fair only when their runs alternate. `--profile DIR` also runs `py-spy record --nonblocking` (Python frames; `--native` stalled the
server it sampled) on the server during the first repeat of each cell (collapsed stacks, `-f raw`: feed them to
flamegraph.pl).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.load.client import Job, run_job
from benchmarks.load.loadgen import RunResult
from benchmarks.load.workload import PRIMARY, make_store, request_features, v2_request
from benchmarks.scenarios.servers import ServerProcess, echo_server, sibyl_server
from tests.support.metric_samples import scraped

VARIANTS = {
    "defaults": ("plain", {}),
    "nolog": ("plain", {"SIBYL_PREDLOG__SINK": "none"}),
    "nofeatures": ("plain", {"SIBYL_PREDLOG__LOG_FEATURES": "false"}),
    "kafka": ("kafka", {}),
    "confluent": ("kafka", {"SIBYL_PREDLOG__KAFKA_CLIENT": "confluent"}),
    "lane": ("plain", {"SIBYL_SERVER__FOLLOWUP_INLINE_ROWS": "0"}),  # every follow-up on the records thread
    "noverdicts": ("plain", {"SIBYL_METRICS__VERDICTS": "false"}),
}
NATIVE = "/sibyl.v1.PredictionService/Predict"
V2 = "/inference.GRPCInferenceService/ModelInfer"


def payload(protocol: str, rows: int, predictor: str = "bench") -> tuple[str, bytes]:
    if protocol == "v2":
        return V2, v2_request(predictor, PRIMARY, rows)
    return NATIVE, request_features(predictor, PRIMARY, rows)


@dataclass
class Cell:
    """One variant x protocol x rows: what its repeats measured."""

    cpu: list[float] = field(default_factory=list)
    client: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    def add(self, result: RunResult) -> None:
        if result.server_cpu_us_per_call is None or not result.ok:
            return
        self.cpu.append(result.server_cpu_us_per_call)
        self.client.append(result.client_cpu_s / result.ok * 1e6)
        self.rps.append(result.achieved_rps)
        self.p50.append(result.latency.get_value_at_percentile(50) / 1000)
        self.p99.append(result.latency.get_value_at_percentile(99) / 1000)

    def line(self, label: str) -> str:
        if not self.cpu:
            return f"{label} no measured run"
        med = statistics.median
        return (
            f"{label} server CPU/call {med(self.cpu):7.0f} µs ({min(self.cpu):.0f}-{max(self.cpu):.0f})  "
            f"client {med(self.client):5.0f} µs  {med(self.rps):6.0f} req/s  "
            f"p50 {med(self.p50):.3f} ms ({min(self.p50):.3f}-{max(self.p50):.3f})  p99 {med(self.p99):.2f} ms"
        )


def scrape_threads(server: ServerProcess) -> tuple[dict[str, float], float]:
    """The server's CPU seconds by thread and its Predict calls so far, from one read of its /metrics."""
    now = scraped(server.metrics_port)
    seconds = {
        dict(labels)["thread"]: v for (name, labels), v in now.items() if name == "sibyl_thread_cpu_seconds_total"
    }
    calls = sum(v for (name, _), v in now.items() if name == "sibyl_requests_total")
    return seconds, calls


@dataclass
class Threads:
    """One variant x cell: each thread's CPU µs per call, per repeat."""

    us: dict[str, list[float]] = field(default_factory=dict)

    def add(self, before: tuple[dict[str, float], float], after: tuple[dict[str, float], float]) -> None:
        calls = after[1] - before[1]
        if calls <= 0:
            return
        for thread, used in after[0].items():
            self.us.setdefault(thread, []).append((used - before[0].get(thread, 0.0)) / calls * 1e6)

    def line(self, label: str) -> str:
        med = {thread: statistics.median(values) for thread, values in self.us.items()}
        total = sum(med.values())
        if not total:
            return f"{label} threads: no calls"
        parts = [
            f"{thread} {us:.1f} ({min(self.us[thread]):.1f}-{max(self.us[thread]):.1f}) {us / total:.1%}"
            for thread, us in sorted(med.items(), key=lambda item: -item[1])
        ]
        return f"{label} threads, CPU µs/call (min-max) share of {total:.0f}: " + ", ".join(parts)


def start(variant: str, store: Path) -> contextlib.AbstractContextManager[ServerProcess]:
    """A variant's server; `NAME@KEY=VALUE+KEY=VALUE` adds settings to variant NAME (an ad-hoc experiment)."""
    if variant == "echo":
        return echo_server()
    name, _, extra = variant.partition("@")
    group, env = VARIANTS[name]
    env = {**env, **dict(item.split("=", 1) for item in extra.split("+") if item)}
    return sibyl_server(group, store, env=env)


def measure(
    server: ServerProcess, method: str, body: bytes, args: argparse.Namespace, profile: Path | None
) -> RunResult:
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
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        command = ["py-spy", "record", "--nonblocking", "-f", "raw", "-r", "500", "-d", str(int(args.duration + 1))]
        spy = subprocess.Popen(
            [*command, "-o", str(profile), "--pid", str(server.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    result = run_job(job)
    if spy is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(30)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default="defaults,nolog", help=f"comma-separated of {', '.join(VARIANTS)}, echo")
    p.add_argument("--protocols", default="v2,native")
    p.add_argument("--rows", default="1,100")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--interleave", action="store_true", help="alternate the variants' repeats, all servers up")
    p.add_argument("--threads", action="store_true", help="CPU µs per call by server thread (its /metrics)")
    p.add_argument("--profile", help="directory for py-spy flame graphs (one per cell)")
    p.add_argument("--predictor", default="bench", help="bench (primary only) or bench-shadow (the example's "
                                                        "shadow and slices)")  # fmt: skip
    args = p.parse_args(argv)
    rows = [int(r) for r in args.rows.split(",")]
    variants = args.variants.split(",")
    for v in variants:
        if v != "echo" and v.partition("@")[0] not in VARIANTS:
            p.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}, echo")
    cells = [(protocol, n) for protocol in args.protocols.split(",") for n in rows]
    with tempfile.TemporaryDirectory(prefix="sibyl-cost-") as tmp:
        store = make_store(Path(tmp) / "store")
        # Interleaved: every server up at once, repeats in turn. Otherwise one server at a time.
        groups = [variants] if args.interleave else [[v] for v in variants]
        for group in groups:
            with contextlib.ExitStack() as servers:
                up = {v: servers.enter_context(start(v, store)) for v in group}
                for protocol, n in cells:
                    method, body = payload(protocol, n, args.predictor)
                    results = {v: Cell() for v in group}
                    threads = {v: Threads() for v in group}
                    for i in range(args.repeats):
                        for v in group if i % 2 == 0 else group[::-1]:  # A B, B A, ...: no side always first
                            profile = (
                                Path(args.profile) / f"{v}-{protocol}-{n}.txt" if args.profile and i == 0 else None
                            )
                            scraped = args.threads and up[v].metrics_port
                            before = scrape_threads(up[v]) if scraped else None
                            result = measure(up[v], method, body, args, profile)
                            if before is not None:
                                threads[v].add(before, scrape_threads(up[v]))
                            if result.errors:
                                print(f"  {v} {protocol} {n}: errors {dict(result.errors)}")
                            results[v].add(result)
                    for v in group:
                        print(results[v].line(f"{v:10} {protocol:6} rows={n:<4}"), flush=True)
                        if threads[v].us:
                            print(threads[v].line(f"{v:10} {protocol:6} rows={n:<4}"), flush=True)
                    base = results[group[-1]]
                    for v in group[:-1]:  # the fairest figure on a drifting box: each repeat's ratio to its neighbour
                        ratios = [a / b for a, b in zip(results[v].cpu, base.cpu, strict=False)]
                        if ratios:
                            print(f"{v:10} {protocol:6} rows={n:<4} / {group[-1]}: CPU per call x"
                                  f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}), "
                                  f"{len(ratios)} paired repeats", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
