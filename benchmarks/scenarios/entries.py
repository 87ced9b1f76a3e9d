"""sibyl's own entries run through a Runner: limit-inprocess (the inference floor), then the scenarios, each
server group against one sibyl server (local, or the plan's --target). Also the pieces the comparison and the
growth runs share: a started server as (target, pid), and the answer check before measuring."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path

import grpc

from benchmarks.load import workload as w
from benchmarks.load.measure import Entry, Lane, Runner, Settings, say
from benchmarks.scenarios.definitions import PREDICT, REDIS_FILL_RPS, SCENARIOS, Scenario, check_response
from benchmarks.scenarios.inprocess import run_inprocess
from benchmarks.scenarios.servers import sibyl_server

LIMITS = ("limit-inprocess",)
GROUPS = ("plain", "kafka", "redis", "redis-kafka")  # Scenario.server values, in run order
Check = Callable[[bytes], str | None]


def limit_inprocess(runner: Runner, rows: tuple[int, ...]) -> None:
    m = w.manifest(w.PRIMARY)
    for n in rows:
        entry = Entry(
            "limit-inprocess",
            "limit",
            "onnxruntime called directly on gbdt@1 (sibyl's session options), back to back: the inference floor",
            section="limits",
            rows=n,
        )
        say(f"{entry.label}: onnxruntime session.run, back to back")
        entry.fixed = run_inprocess(w.model_path(w.PRIMARY), w.sample_matrix(m.columns, n), runner.plan.duration_s)
        runner.add(entry)


def run_limits(plan: Settings, runner: Runner, names: Collection[str], rows: tuple[int, ...]) -> None:
    if "limit-inprocess" in names:
        limit_inprocess(runner, rows)


def first_answers(target: str, method: str, payload: bytes, check: Check, tries: int = 5) -> str | None:
    """A few calls first: None when one passes `check` (the very first may still be connecting to Redis and
    answer with defaults), else what was wrong with the last."""
    problem: str | None = "no answer"
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]) as channel:
        call = channel.unary_unary(method)
        for _ in range(tries):
            try:
                problem = check(call(payload, timeout=10.0))
            except grpc.RpcError as exc:
                problem = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
            if problem is None:
                return None
            time.sleep(0.1)
    return problem


@contextlib.contextmanager
def sibyl_target(
    plan: Settings, group: str, store: Path, workers: int | None = None, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, int | None]]:
    """(target, server pid) of a sibyl for `group`: the plan's --target (no pid: its CPU is not read) or a
    local `sibyl serve` started for it."""
    if plan.target:
        yield plan.target, None
        return
    with sibyl_server(group, store, workers or plan.workers, env) as server:
        yield server.target, server.pid


def scenario_lane(runner: Runner, s: Scenario, target: str, pid: int | None) -> Lane | None:
    """The scenario's entry as a lane to measure, once its first answers pass its check (else skipped: None)."""
    entry = Entry(s.name, "scenario", s.description, section="scenarios", rows=s.rows, api="native")
    payload = s.payload()
    problem = first_answers(target, PREDICT, payload, lambda raw: check_response(s, raw))
    if problem:
        runner.skip(entry, f"check failed: {problem}")
        return None
    return Lane(entry, target, PREDICT, payload, pid)


def finish_scenario(runner: Runner, s: Scenario, lane: Lane) -> None:
    """After the closed loops: the sweeps and, where the scenario has one, the fixed-rate run."""

    def fixed(_: Entry) -> float:
        if s.fixed == "same-as-redis-fill":
            done = [e for e in runner.entries if e.name == "redis-fill" and e.fixed is not None]
            return done[0].fixed.target_rps if done and done[0].fixed else REDIS_FILL_RPS
        return REDIS_FILL_RPS

    fixed_rate = fixed if s.fixed else None
    runner.measure(lane.entry, lane.target, PREDICT, lane.payload, lane.pid, fixed_rate=fixed_rate, closed=False)


def run_scenarios(plan: Settings, runner: Runner, names: Collection[str], store: Path) -> None:
    """One server per group, all up together (a failed start skips its scenarios); the scenarios' closed loops
    interleaved over them (Runner.closed_rounds: shadow-log's target is a ratio to redis-fill's), then each
    scenario's sweeps and fixed-rate run in order."""
    lanes: list[tuple[Scenario, Lane]] = []
    with contextlib.ExitStack() as stack:
        servers = [(g, env) for g in GROUPS for env in dict.fromkeys(tuple(s.env.items()) for s in SCENARIOS)]
        for group, env in servers:
            todo = [s for s in SCENARIOS if s.server == group and tuple(s.env.items()) == env and s.name in names]
            if not todo:
                continue
            try:
                target, pid = stack.enter_context(sibyl_target(plan, group, store, env=dict(env)))
            except RuntimeError as exc:  # a launcher's error, MissingBinaryError included
                for s in todo:
                    entry = Entry(s.name, "scenario", s.description, section="scenarios", rows=s.rows)
                    runner.skip(entry, f"server did not start: {exc}")
                continue
            for s in todo:
                lane = scenario_lane(runner, s, target, pid)
                if lane is not None:
                    lanes.append((s, lane))
        runner.closed_rounds([lane for _, lane in lanes])
        for s, lane in lanes:
            finish_scenario(runner, s, lane)
