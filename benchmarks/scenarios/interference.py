"""`python -m benchmarks.scenarios.interference`: do big requests stall small ones? (issue 33)

One `sibyl serve` on default settings (file log on). Client A sends 1-row calls open-loop at `--rate` (100 rps)
over gRPC (`--protocol native`: Predict with map rows; `v2`: ModelInfer with stock tritonclient bytes); client B,
in its own process, sends `--big-rows` (10,000) map-row Predict calls back to back (c=1). Each repeat measures A
twice, B off and B on, in alternating order (the box drifts: docs/performance.md#the-box-drifts), and prints the
median (min-max over the repeats) of A's p50 / p99 / p99.9, B's calls and rows per second, and the server tree's
CPU (cores busy over the window, and µs per A call with B off). Latencies are measured from each call's intended
send time (benchmarks.load.loadgen: no coordinated omission). `--env KEY=VALUE` (repeatable) sets the server's
settings; `--variant NAME:KEY=VALUE+KEY=VALUE` (repeatable) adds a server with those settings on top, all servers
up at once and their phases interleaved, e.g. `--variant thread:SIBYL_SERVER__DECODE_PROCESSES=0` against the
defaults. `--decode-cost` instead times, in this process, parse and decode of map-row requests of several sizes
inline against through a decode process (serving.decode_pool): wall time and this process's CPU, median of 9,
alternating (where server.decode_process_bytes' default comes from).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.load.client import Job, run_job
from benchmarks.load.loadgen import RunResult
from benchmarks.load.measure import Runner, Settings, say
from benchmarks.load.workload import PRIMARY, make_store, request_features
from benchmarks.scenarios.cost import NATIVE, payload
from benchmarks.scenarios.servers import sibyl_server

SUITE_NAME = "interference"  # its name in `python -m benchmarks` (--only / --skip)
BIG_TIMEOUT_S = 30.0  # a 10,000-row call takes tens of ms; the deadline only catches a stuck server


@dataclass
class Phase:
    """One phase (B off or on) over the repeats."""

    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    p999: list[float] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)  # server tree CPU s per wall s over A's window
    cpu_per_call: list[float] = field(default_factory=list)  # server CPU µs per A call (all of it: B's too)
    big_calls_s: list[float] = field(default_factory=list)
    big_rows_s: list[float] = field(default_factory=list)
    big_p50: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, small: RunResult, big: dict[str, Any] | None, big_rows: int) -> None:
        for code, n in [*small.errors.items(), *((big or {}).get("errors", {}).items())]:
            self.errors[code] = self.errors.get(code, 0) + n
        if not small.ok:
            return
        h = small.latency
        self.p50.append(h.get_value_at_percentile(50) / 1000)
        self.p99.append(h.get_value_at_percentile(99) / 1000)
        self.p999.append(h.get_value_at_percentile(99.9) / 1000)
        if small.server_cpu_s is not None and small.cpu_wall_s > 0:
            self.cores.append(small.server_cpu_s / small.cpu_wall_s)
            self.cpu_per_call.append(small.server_cpu_s / small.ok * 1e6)
        if big is not None:
            self.big_calls_s.append(big["ok"] / big["duration_s"])
            self.big_rows_s.append(big["ok"] * big_rows / big["duration_s"])
            self.big_p50.append(big["p50_ms"])

    def summary(self) -> dict[str, Any]:
        def spread(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"median": statistics.median(values), "min": min(values), "max": max(values)}

        names = ("p50", "p99", "p999", "cores", "cpu_per_call", "big_calls_s", "big_rows_s", "big_p50")
        out: dict[str, Any] = {name: spread(getattr(self, name)) for name in names}
        out["errors"] = self.errors
        return out


def _big_client(job: Job, queue: Any) -> None:
    """Client B's process: a closed loop of big calls; its result goes back as plain numbers."""
    r = run_job(job)
    p50 = r.latency.get_value_at_percentile(50) / 1000 if r.ok else 0.0
    queue.put({"ok": r.ok, "duration_s": r.duration_s, "errors": dict(r.errors), "p50_ms": p50})


def measure_phase(
    target: str, pid: int | None, small: tuple[str, bytes], big: bytes | None, args: argparse.Namespace
) -> tuple[RunResult, dict[str, Any] | None]:
    """A's open loop, with B's closed loop running in another process over the same window when `big` is given."""
    method, body = small
    a = Job(target, method, body, mode="open", rate=args.rate, duration_s=args.duration, warmup_s=args.warmup,
            server_pid=pid)  # fmt: skip
    if big is None:
        return run_job(a), None
    # B starts first and runs past both ends of A's window, so A's whole window sees big calls.
    b = Job(target, NATIVE, big, mode="closed", concurrency=1, duration_s=args.duration + args.warmup + 1.0,
            warmup_s=0.5, timeout_s=BIG_TIMEOUT_S)  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_big_client, args=(b, queue), daemon=True)
    proc.start()
    try:
        time.sleep(1.0)  # the spawned client imports and connects; its warm-up covers the rest
        result = run_job(a)
        big_result = queue.get(timeout=args.duration + BIG_TIMEOUT_S + 30)
    finally:
        proc.join(timeout=BIG_TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
    return result, big_result


def variants(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Variant name -> its server's settings: "defaults" (with --env), then each --variant on top of them."""
    env = dict(item.split("=", 1) for item in args.env)
    out = {"defaults": env}
    for text in args.variant:
        name, _, extra = text.partition(":")
        out[name] = {**env, **dict(item.split("=", 1) for item in extra.split("+") if item)}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    envs = variants(args)
    small = payload(args.protocol, 1)
    big = request_features("bench", PRIMARY, args.big_rows)
    phases = {(v, name): Phase() for v in envs for name in ("off", "on")}
    with tempfile.TemporaryDirectory(prefix="sibyl-interference-") as tmp, contextlib.ExitStack() as stack:
        store = make_store(Path(tmp) / "store")
        servers = {v: stack.enter_context(sibyl_server("plain", store, env=env)) for v, env in envs.items()}
        for server in servers.values():
            run_job(Job(server.target, *small, mode="closed", duration_s=1.0, warmup_s=0.5))  # warm the path
        for i in range(args.repeats):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            for v, server in servers.items():
                for name in order:
                    result, big_result = measure_phase(
                        server.target, server.pid, small, big if name == "on" else None, args
                    )
                    phases[v, name].add(result, big_result, args.big_rows)
                    if args.verbose:
                        h = result.latency
                        print(f"  repeat {i} {v} B {name}: p50 {h.get_value_at_percentile(50) / 1000:.2f} ms "
                              f"p99 {h.get_value_at_percentile(99) / 1000:.2f} ms "
                              f"p99.9 {h.get_value_at_percentile(99.9) / 1000:.2f} ms big {big_result}",
                              flush=True)  # fmt: skip
    settings = {
        "protocol": args.protocol,
        "rate": args.rate,
        "big_rows": args.big_rows,
        "big_bytes": len(big),
        "duration_s": args.duration,
        "repeats": args.repeats,
    }
    return {
        "settings": settings,
        "variants": {
            v: {"env": env, "off": phases[v, "off"].summary(), "on": phases[v, "on"].summary()}
            for v, env in envs.items()
        },
    }


def run_in_suite(plan: Settings, runner: Runner, names: Collection[str]) -> None:
    """The suite's interference entry: this scenario on its defaults (1-row native at 100 rps, 10,000-row calls back to back),
    shortened by --quick; the numbers go to the run's notes, where the report and issue 33's target read them."""
    if SUITE_NAME not in names:
        return
    if plan.target:
        runner.notes[SUITE_NAME] = {"skipped": "needs a local server to start (--target was given)"}
        return
    quick = plan.quick
    args = argparse.Namespace(
        protocol="native", rate=100.0, big_rows=10_000, duration=1.0 if quick else 10.0,
        warmup=0.3 if quick else 1.0, repeats=1 if quick else 3, env=[], variant=[], verbose=False,
    )  # fmt: skip
    say(f"{SUITE_NAME}: 1-row calls at {args.rate:g} rps with and without {args.big_rows:,}-row calls beside them")
    try:
        doc = run(args)
    except (RuntimeError, OSError) as exc:  # the server did not start
        runner.notes[SUITE_NAME] = {"skipped": f"{type(exc).__name__}: {exc}"}
        return
    runner.notes[SUITE_NAME] = doc
    for line in report(doc).splitlines():
        say(f"{SUITE_NAME}: {line}")


def _cell(node: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    if node is None:
        return "-"
    return f"{fmt.format(node['median'])} ({fmt.format(node['min'])}-{fmt.format(node['max'])})"


def _line(name: str, p: dict[str, Any]) -> str:
    line = (
        f"  B {name:3}: A p50 {_cell(p['p50'])} ms  p99 {_cell(p['p99'])} ms  p99.9 {_cell(p['p999'])} ms  "
        f"server CPU {_cell(p['cores'])} cores"
    )
    if name == "off":
        line += f", {_cell(p['cpu_per_call'], '{:.0f}')} µs per A call"
    else:
        line += (
            f"; B {_cell(p['big_calls_s'])} calls/s, {_cell(p['big_rows_s'], '{:.0f}')} rows/s, "
            f"p50 {_cell(p['big_p50'], '{:.0f}')} ms"
        )
    if p["errors"]:
        line += f"  errors {p['errors']}"
    return line


def report(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    lines = [
        f"A: 1-row {s['protocol']} at {s['rate']:g} rps; B: {s['big_rows']:,}-row map Predict "
        f"({s['big_bytes'] / 1e6:.1f} MB) c=1; {s['repeats']} x {s['duration_s']:g} s per phase; "
        "median (min-max)"
    ]
    for variant, node in doc["variants"].items():
        lines.append(f"{variant} {node['env'] or ''}")
        lines += [_line(name, node[name]) for name in ("off", "on")]
    return "\n".join(lines)


async def _decode_cost(rows: list[int], rounds: int = 9) -> list[str]:
    from sibyl.api import big_requests, wire
    from sibyl.serving.decode_pool import DecodePool
    from sibyl.serving.limits import Limits

    def cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    limits = Limits()
    pool = DecodePool(1, 0)
    lines = []
    try:
        await pool.run(abs, (-1,), lambda: 1, None)  # starts the pool
        while not pool.ready:
            await asyncio.sleep(0.05)
        for n in rows:
            data = request_features("bench", PRIMARY, n)
            args = (data, wire.max_fields(limits), limits)
            taken: dict[str, list[tuple[float, float]]] = {"inline": [], "process": []}
            for _ in range(rounds):
                for how, times in taken.items():
                    wall, cpu = time.perf_counter(), cpu_s()
                    if how == "inline":
                        out = big_requests.parse_and_decode(*args)
                    else:
                        out = await pool.run(
                            big_requests.parse_and_decode,
                            args,
                            functools.partial(big_requests.parse_and_decode, *args),
                            None,
                        )
                    big_requests.header(out[0])
                    times.append(((time.perf_counter() - wall) * 1e3, (cpu_s() - cpu) * 1e3))
            cells = [
                f"{how} wall {statistics.median(w for w, _ in t):.2f} ms, CPU here {statistics.median(c for _, c in t):.2f} ms"
                for how, t in taken.items()
            ]
            lines.append(f"{n:6,} rows ({len(data):9,} bytes): " + "; ".join(cells))
    finally:
        pool.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--protocol", choices=("native", "v2"), default="native", help="client A's protocol")
    p.add_argument("--rate", type=float, default=100.0, help="client A's calls per second (open loop)")
    p.add_argument("--big-rows", type=int, default=10_000, help="rows per client B call")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase (measured)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a server setting")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE+...", help="another server")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--verbose", action="store_true", help="print each phase as it ends")
    p.add_argument("--decode-cost", action="store_true", help="time inline against decode-process decodes only")
    args = p.parse_args(argv)
    if args.decode_cost:
        print("\n".join(asyncio.run(_decode_cost(sorted({100, 700, 3_000, args.big_rows})))))
        return 0
    doc = run(args)
    print(report(doc), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
