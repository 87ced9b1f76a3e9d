"""The comparison: every server driven by the same client over the same protocol, their runs interleaved.

KServe V2 ModelInfer for all (the echo floor, sibyl's V2 endpoint, MLServer, Triton, KServe), the request built once
with stock tritonclient.grpc (the sample's rows as one FP32 [N, 16] tensor); sibyl's native Predict and the
echo floor's Predict beside it (the same rows in map form). sibyl runs on default settings (file log on, with
feature values); other settings get rows of their own (kind "variant"). perf_analyzer drives sibyl V2 and
Triton as a second, C++ client. Each row: closed loops (every concurrency x repeats), and at 1 row the
open-loop sweep to the p99 SLO (repeated).

Groups (what --only selects): echo, sibyl, sibyl-nolog, sibyl-kafka, peer-mlserver, peer-triton, peer-kserve.
The HTTP field (sibyl's V2 REST and the HTTP peers, one wrk client for all) is http_field.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.load import workload as w
from benchmarks.load.cpu import tree_rss
from benchmarks.load.measure import Entry, Lane, Runner, Settings, say, start_or_skip
from benchmarks.peers import setup as peers_setup
from benchmarks.peers.entries import MODEL_NAME, PEERS, Peer, check_peer, missing_venv_reason
from benchmarks.peers.v2 import answered_calls
from benchmarks.scenarios.definitions import MODEL_INFER, PREDICT, PREDICTOR, check_native, check_v2
from benchmarks.scenarios.entries import first_answers, sibyl_target
from benchmarks.scenarios.servers import echo_server

GROUPS = ("echo", "sibyl", "sibyl-nolog", "sibyl-kafka", *PEERS)
NOLOG = {"SIBYL_PREDLOG__SINK": "none"}


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "floor", "sibyl", "variant", "peer"
    api: str  # "v2" or "native"
    description: str
    model: str = PREDICTOR  # V2 model name


SIBYL_ROWS = {
    "echo": (
        Row(
            "echo-v2",
            "floor",
            "v2",
            "grpc.aio echo server (uvloop): parses the V2 request, answers a fixed "
            "response of its size: the transport floor",
        ),
        Row("echo-native", "floor", "native", "the same echo server answering sibyl's Predict"),
    ),
    "sibyl": (
        Row("sibyl-v2", "sibyl", "v2", "sibyl V2 ModelInfer, default settings (file log on, with feature values)"),
        Row("sibyl-native", "sibyl", "native", "sibyl native Predict (map-form rows), default settings"),
    ),
    "sibyl-nolog": (
        Row("sibyl-v2-nolog", "variant", "v2", "sibyl V2, prediction log off (SIBYL_PREDLOG__SINK=none)"),
        Row("sibyl-native-nolog", "variant", "native", "sibyl native Predict, prediction log off"),
    ),
    "sibyl-kafka": (
        Row(
            "sibyl-native-kafka",
            "variant",
            "native",
            "sibyl native Predict, the log (with feature values) to a "
            "real Kafka-protocol broker (tansu) instead of the file",
        ),
    ),
}
SERVER_GROUP = {"sibyl": ("plain", None), "sibyl-nolog": ("plain", NOLOG), "sibyl-kafka": ("kafka", None)}


def payload(row: Row, rows: int) -> tuple[str, bytes]:
    if row.api == "v2":
        return MODEL_INFER, w.v2_request(row.model, w.PRIMARY, rows)
    return PREDICT, w.request_features(PREDICTOR, w.PRIMARY, rows)


def ready_lane(runner: Runner, row: Row, rows: int, target: str, pid: int | None, check: bool = True) -> Lane | None:
    """The row's entry as a lane to measure, once its first answers pass the check (else skipped: None)."""
    entry = Entry(row.name, row.kind, row.description, section="compare", rows=rows, api=row.api)
    method, body = payload(row, rows)
    if check:
        checker = (lambda raw: check_v2(raw, rows)) if row.api == "v2" else (lambda raw: check_native(raw, rows, 1))
        problem = first_answers(target, method, body, checker)
        if problem:
            runner.skip(entry, f"check failed: {problem}")
            return None
    return Lane(entry, target, method, body, pid)


def perf_tensors() -> dict[str, list[float]]:
    """One sample row for perf_analyzer as the whole-row FP32 tensor: what sibyl's and Triton's ModelConfig list,
    so both get the same one-tensor request."""
    m = w.manifest(w.PRIMARY)
    row = w.sample_matrix(m.columns, 1)[0]
    return {m.input_name: [float(v) for v in row]}


def perf_rows(
    runner: Runner,
    exe: str | None,
    name: str,
    kind: str,
    target: str,
    pid: int | None,
    model: str,
    rows: tuple[int, ...],
) -> None:
    desc = f"{name} driven by perf_analyzer (C++), the whole-row FP32 tensor"
    for n in rows:
        entry = Entry(name, kind, desc, section="compare", rows=n, api="v2", client="perf_analyzer")
        if exe is None:
            runner.skip(entry, "perf_analyzer not found: run `bash scripts/setup_perf_analyzer.sh` (or --with-peers)")
            continue
        answered = lambda: answered_calls(target, model)  # noqa: E731
        runner.perf_analyzer(entry, exe, target, model, perf_tensors(), pid, answered)


def model_bytes() -> int:
    """What the benchmark predictors load: gbdt@1 and mlp@1's model.onnx."""
    return sum(w.model_path(ref).stat().st_size for ref in (w.PRIMARY, w.SECOND))


@dataclass
class Started:
    """The comparison's servers, up together: the lanes to measure and the perf_analyzer rows to run."""

    lanes: list[Lane] = field(default_factory=list)
    perf: list[tuple[str, str, str, int | None, str]] = field(default_factory=list)  # name, kind, target, pid, model
    sibyl_pid: int | None = None  # the default-settings server, for the memory note

    def add(self, lane: Lane | None) -> None:
        if lane is not None:
            self.lanes.append(lane)


def start_echo(stack: contextlib.ExitStack, plan: Settings, runner: Runner, started: Started) -> None:
    rows = plan.compare_rows
    if plan.target:
        for n in rows:
            for row in SIBYL_ROWS["echo"]:
                runner.skip(Entry(row.name, row.kind, row.description, rows=n, api=row.api), "local only")
        return
    echo = stack.enter_context(echo_server())
    for n in rows:
        for row in SIBYL_ROWS["echo"]:
            started.add(ready_lane(runner, row, n, echo.target, echo.pid))


def start_sibyl(
    stack: contextlib.ExitStack, plan: Settings, runner: Runner, group: str, store: Path, started: Started
) -> None:
    server_group, env = SERVER_GROUP[group]
    rows = plan.compare_rows
    try:
        target, pid = stack.enter_context(sibyl_target(plan, server_group, store, env=env))
    except RuntimeError as exc:
        for n in rows:
            for row in SIBYL_ROWS[group]:
                runner.skip(Entry(row.name, row.kind, row.description, rows=n, api=row.api), f"did not start: {exc}")
        return
    for n in rows:
        for row in SIBYL_ROWS[group]:
            started.add(ready_lane(runner, row, n, target, pid))
    if group == "sibyl":
        started.perf.append(("sibyl-v2", "sibyl", target, pid, PREDICTOR))
        started.sibyl_pid = pid


@contextlib.contextmanager
def peer_server(peer: Peer) -> Iterator[object]:
    python = peers_setup.venv_python(peer.venv)
    if python is None:
        raise LookupError(missing_venv_reason(peer))
    with peer.server(python, w.model_path(w.PRIMARY)) as server:
        yield server


def start_peer(stack: contextlib.ExitStack, plan: Settings, runner: Runner, peer: Peer, started: Started) -> None:
    row = Row(peer.row, "peer", "v2", peer.description, model=MODEL_NAME)
    entries = [Entry(row.name, "peer", peer.description, rows=n, api="v2") for n in plan.compare_rows]
    server = start_or_skip(stack, runner, entries, "peers", lambda: peer_server(peer))
    if server is None:
        return
    target, pid = server.target, server.pid  # type: ignore[attr-defined]
    for entry in entries:
        problem = check_peer(target, entry.rows)
        if problem:
            runner.skip(entry, f"check failed: {problem}")
            continue
        started.add(ready_lane(runner, row, entry.rows, target, pid, check=False))
    if peer.perf_analyzer:
        started.perf.append((row.name, "peer", target, pid, MODEL_NAME))


def run_compare(plan: Settings, runner: Runner, names: Collection[str], store: Path, exe: str | None) -> None:
    """Every server of the comparison started first and kept up; the closed loops interleaved over all of them
    (Runner.closed_rounds: this box's speed drifts within minutes, docs/performance.md#the-box-drifts, and the
    targets are ratios between rows); then each row's sweeps one after another, then perf_analyzer."""
    with contextlib.ExitStack() as stack:
        started = Started()
        if "echo" in names:
            start_echo(stack, plan, runner, started)
        for group in ("sibyl", "sibyl-nolog", "sibyl-kafka"):
            if group in names:
                say(f"{group}: sibyl server")
                start_sibyl(stack, plan, runner, group, store, started)
        for name, peer in PEERS.items():
            if name in names:
                say(f"{name}: peer server")
                start_peer(stack, plan, runner, peer, started)
        if started.lanes:
            say(f"closed loops interleaved over {len(started.lanes)} rows, {plan.repeats} rounds per concurrency")
        runner.closed_rounds(started.lanes)
        for lane in started.lanes:
            sweep = lane.entry.rows == 1 and lane.entry.kind != "variant"
            runner.measure(lane.entry, lane.target, lane.method, lane.payload, lane.pid, sweep=sweep, closed=False)
        if plan.perf_analyzer:
            for name, kind, target, pid, model in started.perf:
                perf_rows(runner, exe, name, kind, target, pid, model, plan.compare_rows)
        if started.sibyl_pid is not None:
            runner.notes["memory"] = {"model_bytes": model_bytes(), "processes": tree_rss(started.sibyl_pid)}
