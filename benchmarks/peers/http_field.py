"""The HTTP field's run: sibyl's V2 REST and the HTTP peers (MLServer REST, KServe REST, BentoML, LitServe, Ray
Serve) up together on loopback ports, each checked (its scores equal onnxruntime's on the same rows), then wrk
closed loops interleaved over all of them, every concurrency x repeats, at 1 and 100 rows (the plan's
compare_rows), as the gRPC comparison interleaves its rows (Runner.closed_rounds says why).

Groups (what --only selects): the names of http_entries(), e.g. http-sibyl, http-bentoml.
"""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load import workload as w
from benchmarks.load import wrk
from benchmarks.load.cpu import tree_cpu_s
from benchmarks.load.measure import Entry, Runner, Settings, say, start_or_skip
from benchmarks.peers import setup as peers_setup
from benchmarks.peers.entries import MODEL_NAME
from benchmarks.peers.http_entries import JSON, HttpEntry, check_scores, http_entries
from benchmarks.peers.http_servers import BentoMLPeer, KServePeer, LitServePeer, RayServePeer
from benchmarks.peers.servers import MLServerPeer
from benchmarks.scenarios.servers import sibyl_server
from sibyl.process.banner import parse_serving_line
from tests.support.process import LOOPBACK

IDLE_S = 2.0  # how long the idle servers' CPU is read before the rounds
WRK_MISSING = "wrk not found: apt-get install wrk (or set SIBYL_WRK to a wrk binary)"
Server = Callable[[Path, Path], object]  # (venv python, model.onnx) -> a not yet started server with http_port, pid
SERVERS: dict[str, Server] = {
    "mlserver": lambda python, model: MLServerPeer(python, model, MODEL_NAME),
    "kserve": lambda python, model: KServePeer(python, model, MODEL_NAME),
    "bentoml": BentoMLPeer,
    "litserve": LitServePeer,
    "rayserve": RayServePeer,
}


@dataclass(frozen=True)
class HttpLane:
    """An entry ready to measure over HTTP: where its POSTs go, what they carry, whose CPU is read."""

    entry: Entry
    url: str
    body: bytes
    pid: int | None


def http_port(server: object) -> int:
    """The HTTP port of a started peer: KServe's and the frameworks' `http_port`, MLServer's first extra port."""
    port = getattr(server, "http_port", None)
    return int(port) if port is not None else int(server.extra_ports[0])  # type: ignore[attr-defined]


@contextlib.contextmanager
def http_server(entry: HttpEntry, plan: Settings, store: Path) -> Iterator[tuple[int, int | None]]:
    """(HTTP port, pid of the process tree to read) of the entry's server, started for the run.
    LookupError: its venv is missing; RuntimeError/OSError: it did not start."""
    if entry.venv is None:
        with sibyl_server("plain", store, plan.workers) as sibyl:
            serving = parse_serving_line(sibyl.log_path.read_text(errors="replace"))
            if serving is None or not serving.http_port:
                raise RuntimeError("sibyl serve printed no HTTP port")
            yield serving.http_port, sibyl.pid
        return
    python = peers_setup.venv_python(entry.venv)
    if python is None:
        where = peers_setup.venv_dir(entry.venv)
        raise LookupError(
            f"its venv {where} is missing or outdated: create it with `python -m benchmarks.peers.setup "
            f"{entry.venv}` or run the suite with --with-peers"
        )
    with SERVERS[entry.venv](python, w.model_path(w.PRIMARY)) as server:  # type: ignore[attr-defined]
        yield http_port(server), server.pid


def post(port: int, path: str, body: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        conn.request("POST", path, body, {"Content-Type": JSON})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def first_answer(entry: HttpEntry, port: int, rows: int, tries: int = 5) -> str | None:
    """None once an answer carries onnxruntime's scores for the rows (a few tries: a replica may still be
    warming), else what was wrong with the last."""
    problem: str | None = "no answer"
    for _ in range(tries):
        try:
            status, raw = post(port, entry.path, entry.body(rows))
            problem = check_scores(entry, raw, rows) if status == 200 else f"HTTP {status}: {raw[:200]!r}"
        except OSError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return None
        time.sleep(0.2)
    return problem


def start_http(
    stack: contextlib.ExitStack, plan: Settings, runner: Runner, entry: HttpEntry, store: Path, lanes: list[HttpLane]
) -> None:
    entries = [
        Entry(entry.row, "sibyl" if entry.venv is None else "peer", entry.description, "http", n, "http", "wrk")
        for n in plan.compare_rows
    ]
    started = start_or_skip(stack, runner, entries, "the HTTP field", lambda: http_server(entry, plan, store))
    if started is None:
        return
    port, pid = started
    for e in entries:
        problem = first_answer(entry, port, e.rows)
        if problem:
            runner.skip(e, f"check failed: {problem}")
            continue
        lanes.append(HttpLane(e, f"http://{LOOPBACK}:{port}{entry.path}", entry.body(e.rows), pid))


def wrk_line(r: wrk.WrkRun) -> str:
    if r.error:
        return r.error
    cpu = r.server_cpu_us_per_call
    return (
        f"{r.requests_per_s:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, p99.9 {r.p999_ms:.2f} ms"
        + (f", server {cpu:,.0f} µs/call" if cpu is not None else "")
        + f", errors {r.error_count}"
    )


def idle_cores(lanes: list[HttpLane], seconds: float = IDLE_S) -> None:
    """Each server tree's CPU while nothing calls it, in cores (entry.params["idle_cores"]): part of its CPU per
    call under load is this background (Ray's GCS and raylet, pollers), which the report shows beside it."""
    pids = {lane.pid for lane in lanes if lane.pid is not None}
    before = {pid: tree_cpu_s(pid) for pid in pids}
    time.sleep(seconds)
    used = {pid: tree_cpu_s(pid) - cpu for pid, cpu in before.items()}
    for lane in lanes:
        if lane.pid is not None:
            lane.entry.params["idle_cores"] = round(used[lane.pid] / seconds, 4)


def wrk_rounds(plan: Settings, exe: str, lanes: list[HttpLane]) -> None:
    """Every lane once per round at each concurrency, starting one lane further each round."""
    for c in plan.concurrency:
        for lane in lanes:
            lane.entry.http[c] = []
        for i in range(plan.repeats):
            k = i % len(lanes) if lanes else 0
            for lane in lanes[k:] + lanes[:k]:
                r = wrk.run(
                    exe,
                    lane.url,
                    lane.body,
                    content_type=JSON,
                    concurrency=c,
                    duration_s=plan.duration_s,
                    warmup_s=plan.warmup_s,
                    server_pid=lane.pid,
                    timeout_s=plan.timeout_s,
                )
                lane.entry.http[c].append(r)
                say(f"{lane.entry.label} wrk c={c} #{i + 1}: {wrk_line(r)}")


def run_http_field(plan: Settings, runner: Runner, names: Collection[str], store: Path) -> None:
    """The HTTP field's entries among `names`: servers up together, checked, then wrk's interleaved rounds."""
    chosen = [e for name, e in http_entries().items() if name in names]
    if not chosen:
        return
    exe = wrk.binary()
    if exe is None:
        for e in chosen:
            for n in plan.compare_rows:
                runner.skip(Entry(e.row, "peer", e.description, "http", n, "http", "wrk"), WRK_MISSING)
        return
    with contextlib.ExitStack() as stack:
        lanes: list[HttpLane] = []
        for e in chosen:
            say(f"{e.name}: HTTP server")
            start_http(stack, plan, runner, e, store, lanes)
        if lanes:
            idle_cores(lanes)
            say(f"wrk closed loops interleaved over {len(lanes)} HTTP rows, {plan.repeats} rounds per concurrency")
        wrk_rounds(plan, exe, lanes)
        for lane in lanes:
            runner.add(lane.entry)
