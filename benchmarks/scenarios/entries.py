"""sibyl's entries and the floors, run through a Runner: limit-inprocess, limit-grpc-echo, then each server
group's scenarios against one sibyl server (local, or the plan's --target)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import grpc

from benchmarks.load import workload as w
from benchmarks.load.measure import Entry, Runner, Settings, say
from benchmarks.load.sweep import Sweep
from benchmarks.scenarios.definitions import PREDICT, SCENARIOS, Scenario, check_response
from benchmarks.scenarios.inprocess import run_inprocess
from benchmarks.scenarios.servers import echo_server, sibyl_server

LIMITS = ("limit-inprocess", "limit-grpc-echo")
GROUPS = ("plain", "redis", "redis-kafka")  # Scenario.server values, in run order


def limit_inprocess(runner: Runner) -> None:
    m = w.manifest(w.PRIMARY)
    say("limit-inprocess: onnxruntime session.run on 1 row, back to back")
    r = run_inprocess(w.model_path(w.PRIMARY), w.sample_matrix(m.columns, 1), runner.plan.duration_s, 0.5)
    runner.add(
        Entry("limit-inprocess", "limit", "onnxruntime called directly: gbdt@1, the single-row input (floor)", r)
    )


def limit_echo(runner: Runner) -> None:
    desc = "grpc.aio server under uvloop answering a fixed PredictResponse to the single-row request (transport floor)"
    single = SCENARIOS[0]
    with echo_server() as server:
        run = runner.runs_of(server.target, single.payload(), PREDICT)
        runner.measure_with("limit-grpc-echo", "limit", desc, run, lambda _: single.ref_rps, single.sweep_start_rps)


def run_limits(plan: Settings, runner: Runner, names: Collection[str]) -> None:
    if "limit-inprocess" in names:
        limit_inprocess(runner)
    if "limit-grpc-echo" in names:
        if plan.target:
            runner.skip("limit-grpc-echo", "limit", "transport floor", "runs locally only (no --target)")
        else:
            limit_echo(runner)


def scenario(runner: Runner, s: Scenario, target: str) -> None:
    payload = s.payload()
    problem = check(s, target, payload)
    if problem:
        runner.skip(s.name, "sibyl", s.description, f"check failed: {problem}")
        return

    def fixed(sweep: Sweep) -> float:
        if s.name == "redis-fill" and sweep.max_rps:
            return sweep.max_rps / 2
        if s.name == "shadow-log" and "redis-fill" in runner.rates:
            return runner.rates["redis-fill"]
        return s.ref_rps

    run = runner.runs_of(target, payload, PREDICT)
    runner.measure_with(s.name, "sibyl", s.description, run, fixed, sweep_start=s.sweep_start_rps)


def check(s: Scenario, target: str, payload: bytes, tries: int = 5) -> str | None:
    """A few calls first: the very first may still be connecting to Redis and answer with defaults."""
    problem: str | None = "no answer"
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(PREDICT)
        for _ in range(tries):
            try:
                problem = check_response(s, call(payload, timeout=10.0))
            except grpc.RpcError as exc:
                problem = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
            if problem is None:
                return None
            time.sleep(0.1)
    return problem


@contextlib.contextmanager
def _target_for(plan: Settings, group: str, store: Path) -> Iterator[str]:
    if plan.target:
        yield plan.target
        return
    with sibyl_server(group, store, plan.workers) as server:
        yield server.target


def run_scenarios(plan: Settings, runner: Runner, names: Collection[str]) -> None:
    """Each server group's scenarios against one server started for the group (a failed start skips them)."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = w.make_store(Path(tmp))
        for group in GROUPS:
            todo = [s for s in SCENARIOS if s.server == group and s.name in names]
            if not todo:
                continue
            try:
                with _target_for(plan, group, store) as target:
                    for s in todo:
                        scenario(runner, s, target)
            except RuntimeError as exc:  # a launcher's error, MissingBinaryError included
                for s in todo:
                    if s.name not in {e.name for e in runner.entries}:
                        runner.skip(s.name, "sibyl", s.description, f"server did not start: {exc}")
