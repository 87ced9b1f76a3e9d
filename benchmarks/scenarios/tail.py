"""`python -m benchmarks.scenarios.tail`: where the slow 1-row calls' time goes (issue 33, item 1).

One `sibyl serve` per variant (defaults: file log on; `nolog`, `shadow` (predictor bench-shadow: an MLP shadow at
sample 1.0 and the example's slices), `noverdicts`, `gcfew` (gc thresholds 50000/50/100), `switch5` (Python's own
5 ms switch interval; sibyl's default is server.gil_switch_ms = 1), `lane` / `lanenolog` (every call's follow-up on
the records thread: server.followup_inline_rows 0), all up at once, their cells interleaved over
`--repeats` (the box drifts: docs/performance.md#the-box-drifts). A cell is a closed loop of 1-row native Predict or
V2 ModelInfer at c=1 or c=8 for `--duration` s; each call's send and receive instants are kept (CLOCK_MONOTONIC,
which the server shares). What is read from the server, every cell:
- GC pauses: a sitecustomize on the server's PYTHONPATH only installs gc.callbacks (start/stop instants, generation,
  thread) and dumps them with the server's threads on SIGUSR2; a slow call "meets" GC when a pause overlaps it;
- per-thread CPU of each call at c=1: /proc/PID/task/*/schedstat (ns run time and ns run-queue wait, not
  /proc/.../stat's 10 ms ticks) read just before the send and after the answer, kept open and pread;
then, in a forensic pass on the defaults server (`--no-forensics` skips it):
- GIL holders: `py-spy record --gil --threads --nonblocking -f chrometrace` at 1 kHz over each cell (chrometrace,
  not raw: it keeps each sample's instant), anchored by a 20 ms spin the sitecustomize runs on SIGUSR1; the
  holders' shares in the slowest calls' windows against the whole cell;
- stage timelines: the same cells against a server with tracing on (console exporter, every call traced): each
  slow call's `sibyl.predict` span and its stages matched to the call, so the time before the server span, in
  each stage and after it is per call. Tracing adds work on the records thread, so its latencies are not compared.
Prints p50 / p99 / p99.9 as median (min-max) over the repeats with the 1-minute load average, and for the slow
calls (>= p99 and >= p99.9 of the cell) against the median ones, what each cause accounts for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.load.client import GRPC_OPTIONS
from benchmarks.load.workload import make_store
from benchmarks.scenarios.cost import payload
from benchmarks.scenarios.servers import REPO_ROOT, ServerProcess, sibyl_server
from benchmarks.scenarios.tail_probes import SITECUSTOMIZE, Tasks, console_spans, gil_segments, overlap, thread_label

VARIANTS: dict[str, tuple[str, dict[str, str]]] = {  # name -> (predictor, server settings)
    "defaults": ("bench", {}),
    "nolog": ("bench", {"SIBYL_PREDLOG__SINK": "none"}),
    "shadow": ("bench-shadow", {}),
    "noverdicts": ("bench", {"SIBYL_METRICS__VERDICTS": "false"}),
    "gcfew": ("bench", {"SIBYL_TAIL_GC_THRESHOLD": "50000,50,100"}),
    "switch5": ("bench", {"SIBYL_SERVER__GIL_SWITCH_MS": "5"}),
    # follow-ups of every call on the records thread, as before server.followup_inline_rows
    "lane": ("bench", {"SIBYL_SERVER__FOLLOWUP_INLINE_ROWS": "0"}),
    "lanenolog": ("bench", {"SIBYL_SERVER__FOLLOWUP_INLINE_ROWS": "0", "SIBYL_PREDLOG__SINK": "none"}),
    "pace": ("bench", {"SIBYL_SERVER__GIL_SLICE_MS": "0.2"}),  # after-response threads in 0.2 ms GIL slices
    "pacenodefer": ("bench", {"SIBYL_SERVER__GIL_SLICE_MS": "0.2", "SIBYL_SERVER__GIL_DEFER_MS": "0"}),
    "shadowpace": ("bench-shadow", {"SIBYL_SERVER__GIL_SLICE_MS": "0.2"}),
}
# Every call traced, spans as JSON on stdout (the server log), exported every 0.5 s instead of 5 (OTel SDK default)
TRACED = {"SIBYL_TRACING__ENABLED": "true", "SIBYL_TRACING__EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "500"}
OTHERS_MS = 0.2  # other Python threads on a core this long during a 1-row call: they took the GIL
WAIT_MS = 0.3  # the event loop thread runnable but not running this long: the box, not sibyl
CELLS = [("native", 1), ("v2", 1), ("native", 8), ("v2", 8)]


async def closed_loop(target: str, method: str, body: bytes, c: int, seconds: float, tasks: Tasks | None) -> dict:
    """c workers back to back; each call's (send, answer) ns, and at c=1 the threads' schedstat around it."""
    times: list[tuple[int, int]] = []
    stats: list[tuple[list[int], list[int]]] = []
    async with grpc.aio.insecure_channel(target, options=GRPC_OPTIONS) as channel:
        stub = channel.unary_unary(method)
        for _ in range(50):  # warm the path and the channel
            await stub(body, timeout=10)
        end = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < end:
                before = tasks.read() if tasks else None
                t0 = time.monotonic_ns()
                await stub(body, timeout=10)
                t1 = time.monotonic_ns()
                times.append((t0, t1))
                if tasks and before is not None:
                    stats.append((before, tasks.read()))

        await asyncio.gather(*(worker() for _ in range(c)))
    return {"times": np.array(times, dtype=np.int64), "stats": np.array(stats, dtype=np.int64) if stats else None}


def analyse(cell: dict, dump: dict, tasks: Tasks | None, pid: int, gil: tuple | None, spans: np.ndarray | None) -> dict:
    times = cell["times"]
    lat = (times[:, 1] - times[:, 0]) / 1e6
    p50, p99, p999 = (float(np.percentile(lat, q)) for q in (50, 99, 99.9))
    groups = {
        "p99": lat >= p99,
        "p99.9": lat >= p999,
        "median": (lat >= np.percentile(lat, 40)) & (lat <= np.percentile(lat, 60)),
    }
    out: dict[str, Any] = {"calls": len(lat), "p50": p50, "p99": p99, "p999": p999, "load1": os.getloadavg()[0]}
    pauses = np.array([p for p in dump["gc"] if p[1] >= times[0, 0] and p[0] <= times[-1, 1]], dtype=np.int64)
    pauses = pauses.reshape(-1, 4)[np.argsort(pauses.reshape(-1, 4)[:, 0])] if len(pauses) else pauses.reshape(-1, 4)
    in_gc = overlap(times, pauses[:, :2]) / 1e6
    per_gen = {str(g): np.diff(pauses[pauses[:, 2] == g, :2]) / 1e6 for g in (0, 1, 2)}
    out["gc"] = {
        "collections": {g: len(v) for g, v in per_gen.items()},
        "pause_ms_p50": {g: float(np.median(v)) for g, v in per_gen.items() if len(v)},
        "calls_meeting_gc": {k: float((in_gc[m] > 0).mean()) for k, m in (("all", lat >= 0), *groups.items())},
    }
    out["extra_ms"] = {k: float(np.median(lat[m]) - p50) for k, m in groups.items()}
    if cell["stats"] is not None and tasks is not None:
        delta = (cell["stats"][:, 1] - cell["stats"][:, 0]).reshape(len(lat), -1, 2) / 1e6  # ms: run, wait
        labels = [thread_label(t, {int(k): v for k, v in dump["threads"].items()}, tasks.comm, pid) for t in tasks.tids]
        per: dict[str, dict[str, float]] = {}
        for k, m in groups.items():
            row: dict[str, float] = defaultdict(float)
            for j, label in enumerate(labels):
                row[f"run {label}"] += float(delta[m, j, 0].mean())
                if label.startswith("MainThread"):
                    row["runqueue wait MainThread"] += float(delta[m, j, 1].mean())
            row["runqueue wait client"] = float(delta[m, -1, 1].mean())
            row["runqueue wait, all server threads"] = float(delta[m, :-1, 1].sum(axis=1).mean())
            per[k] = {key: round(v, 4) for key, v in row.items() if v >= 0.001}
        out["threads_ms_per_call"] = per
        python = [j for j, label in enumerate(labels) if not label.startswith(("MainThread", "native:", "client"))]
        main = [j for j, label in enumerate(labels) if label.startswith("MainThread")]
        others = delta[:, python, 0].sum(axis=1)
        waited = delta[:, main, 1].sum(axis=1)
        out["calls_with"] = {  # share of each group's calls where...
            f"other Python threads ran >= {OTHERS_MS} ms": {k: float((others[m] >= OTHERS_MS).mean()) for k, m in groups.items()},
            f"event loop waited >= {WAIT_MS} ms for a core": {k: float((waited[m] >= WAIT_MS).mean()) for k, m in groups.items()},
        }  # fmt: skip
    if gil is not None:
        segments, anchored = gil
        names = {int(k): v for k, v in dump["threads"].items()}
        by_thread: dict[str, list] = defaultdict(list)
        for a, b, t, _ in segments:
            by_thread[thread_label(t, names, {}, pid)].append((a, b))
        whole = np.array([[times[0, 0], times[-1, 1]]])
        shares = {}
        for k, m in (("all", lat >= 0), ("p99", groups["p99"])):
            win = whole if k == "all" else times[m]
            span = float((win[:, 1] - win[:, 0]).sum())
            shares[k] = {
                label: round(float(overlap(win, np.array(sorted(s))).sum()) / span, 4) for label, s in by_thread.items()
            }
        frames: dict[str, float] = defaultdict(float)
        slow = times[groups["p99"]]
        for a, b, t, f in segments:
            if t != pid:
                frames[f] += float(overlap(slow, np.array([[a, b]])).sum()) / 1e6
        top = sorted(frames.items(), key=lambda kv: -kv[1])[:8]
        out["gil"] = {
            "anchored": anchored,
            "samples": len(segments),
            "holder_share": shares,
            "other_threads_top_frames_ms": {f: round(v, 3) for f, v in top if v > 0},
        }
    if spans is not None and len(spans):
        idx = np.searchsorted(spans[:, 0], times[:, 0])  # the first span starting after the send
        ok = idx < len(spans)
        idx = np.minimum(idx, len(spans) - 1)
        ok &= spans[idx, 1] <= times[:, 1]
        s = spans[idx]
        parts = {
            "before server span": s[:, 0] - times[:, 0],
            "route": s[:, 2],
            "features": s[:, 3],
            "infer": s[:, 4],
            "encode": s[:, 5],
            "after server span": times[:, 1] - s[:, 1],
        }
        out["stages_ms"] = {
            k: {n: round(float(np.median(v[m & ok]) / 1e6), 4) for n, v in parts.items()}
            for k, m in groups.items()
            if (m & ok).any()
        }
        out["stages_matched"] = float(ok.mean())
    return out


def dump_of(server: ServerProcess, path: Path) -> dict:
    path.unlink(missing_ok=True)
    os.kill(server.pid or 0, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.label}: no GC/threads dump (is the sitecustomize on its PYTHONPATH?)")
        time.sleep(0.05)
    return json.loads(path.read_text())


def measure(server: ServerProcess, body: tuple[str, bytes], c: int, seconds: float, dump_path: Path,
            pyspy: Path | None = None, log: Path | None = None) -> dict:  # fmt: skip
    """One cell against `server`, then its GC/threads dump; with `pyspy` under py-spy, with `log` its spans."""
    pid = server.pid or 0
    tasks = Tasks(pid) if c == 1 else None
    skip = log.stat().st_size if log is not None else 0
    spy = None
    if pyspy is not None:
        command = f"py-spy record -p {pid} --gil --threads --nonblocking -r 1000 -f chrometrace -d {int(seconds + 4)}"
        spy = subprocess.Popen(
            [*command.split(), "-o", str(pyspy)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)  # attached
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.1)
    try:
        cell = asyncio.run(closed_loop(server.target, *body, c, seconds, tasks))
        if spy is not None:
            spy.wait(timeout=seconds + 30)
        dump = dump_of(server, dump_path)
        gil = gil_segments(pyspy, dump) if pyspy is not None else None
        spans = None
        if log is not None:
            deadline = time.monotonic() + 15  # the span processor's next export or two
            while time.monotonic() < deadline:
                spans = console_spans(log, time.time_ns() - time.monotonic_ns(), skip)
                if (spans[:, 0] >= cell["times"][0, 0]).sum() >= len(cell["times"]):
                    break
                time.sleep(0.5)
        return analyse(cell, dump, tasks, pid, gil, spans)
    finally:
        if tasks:
            tasks.close()
        if spy is not None and spy.poll() is None:
            spy.kill()


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = args.variants.split(",")
    cells = [(p, int(c)) for p, c in (x.split(":") for x in args.cells.split(","))]
    doc: dict[str, Any] = {"settings": vars(args), "variants": {}, "forensics": {}}
    with tempfile.TemporaryDirectory(prefix="sibyl-tail-") as tmp, contextlib.ExitStack() as stack:
        tmpdir = Path(tmp)
        (tmpdir / "site").mkdir()
        (tmpdir / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        store = make_store(tmpdir / "store")
        path = f"{tmpdir / 'site'}{os.pathsep}{REPO_ROOT}"

        def start(name: str, extra: dict[str, str]) -> ServerProcess:
            env = {"PYTHONPATH": path, "SIBYL_TAIL_DUMP": str(tmpdir / f"{name}.json"), **extra}
            return stack.enter_context(sibyl_server("plain", store, env=env))

        servers = {n: start(n, VARIANTS[n][1]) for n in names}
        runs: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
        for r in range(args.repeats):
            for n in names:
                for protocol, c in cells:
                    body = payload(protocol, 1, VARIANTS[n][0])
                    got = measure(servers[n], body, c, args.duration, tmpdir / f"{n}.json")
                    runs[n, protocol, c].append(got)
                    if args.verbose:
                        print(
                            f"  {r} {n} {protocol} c={c}: p50 {got['p50']:.2f} p99 {got['p99']:.2f} "
                            f"p99.9 {got['p999']:.2f} ms load {got['load1']:.2f}",
                            flush=True,
                        )
        for (n, protocol, c), got in runs.items():
            cell = {k: spread([g[k] for g in got]) for k in ("p50", "p99", "p999", "load1")}
            doc["variants"].setdefault(n, {})[f"{protocol} c={c}"] = {**cell, "runs": got}
        if args.forensics and shutil.which("py-spy"):
            first = names[0]
            traced = start("traced", {**VARIANTS[first][1], **TRACED})
            for protocol, c in cells:
                body = payload(protocol, 1, VARIANTS[first][0])
                doc["forensics"][f"{protocol} c={c}"] = {
                    "gil": measure(
                        servers[first], body, c, args.duration, tmpdir / f"{first}.json", pyspy=tmpdir / "spy.json"
                    ),
                    "traced": measure(traced, body, c, args.duration, tmpdir / "traced.json", log=traced.log_path),
                }
    return doc


def report(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    lines = [
        f"1-row closed loops, {s['repeats']} x {s['duration']:g} s per cell; median (min-max) over repeats; "
        "load = 1-min load average at cell end"
    ]

    def cell(n: dict) -> str:
        return f"{n['median']:.2f} ({n['min']:.2f}-{n['max']:.2f})"

    for v, cells in doc["variants"].items():
        for name, n in cells.items():
            lines.append(
                f"{v:10} {name:11} p50 {cell(n['p50'])}  p99 {cell(n['p99'])}  p99.9 {cell(n['p999'])} ms"
                f"  load {cell(n['load1'])}"
            )
    for v, cells in doc["variants"].items():
        for name, n in cells.items():
            last = n["runs"][-1]
            lines.append(f"{v} {name} (last repeat): extra over p50 {last['extra_ms']}; GC {last['gc']}")
            if "threads_ms_per_call" in last:
                lines.append(f"  thread ms per call {json.dumps(last['threads_ms_per_call'])}")
                lines.append(f"  share of calls with {json.dumps(last['calls_with'])}")
    for name, f in doc["forensics"].items():
        lines.append(f"forensics {name}: GIL {json.dumps(f['gil'].get('gil'))}")
        lines.append(
            f"  traced p50 {f['traced']['p50']:.2f} p99 {f['traced']['p99']:.2f} ms, stages "
            f"{json.dumps(f['traced'].get('stages_ms'))} matched {f['traced'].get('stages_matched')}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {','.join(VARIANTS)}")
    p.add_argument("--cells", default=",".join(f"{p}:{c}" for p, c in CELLS), help="protocol:concurrency,...")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-forensics", dest="forensics", action="store_false", help="skip py-spy and the traced server")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    doc = run(args)
    print(report(doc), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
