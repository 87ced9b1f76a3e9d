"""Overload, short CI form (issue 30 item 6): a real `sibyl serve` with `server.max_in_flight` 4 and a model that
costs milliseconds of CPU per call (capacity low enough for a Python client on the same 2 cores to send 5x it),
measured at capacity (closed loop, 4 clients), then driven **open loop at 5x that rate for 6 s** (10 s with
--runslow, the length of the runs in docs/reliability.md), then at half.

Counted, not timed: no call ends with a code other than OK or RESOURCE_EXHAUSTED (so every admitted call answers
within its 2 s deadline); refused calls never reach inference (the inference histogram counts no more than the OK
answers); goodput under overload stays within a generous share of capacity; RSS grows by a bounded amount; from
1 s after the overload ends at most a tenth of the calls are refused (most were, during it). Printed, not
asserted: admitted calls' p99 against the p99 at 80% load (2.6-6.9x on the shared machine), server CPU per
refused call (/proc), goodput. With a lighter model (capacity ~900 calls/s) the client cannot send 5x: it times
its own calls out, so this measures the client, not the server.

A second test measures what the issue asks of refusals (< 1 ms of server CPU each) directly: every admission slot
held by calls that wait without CPU, a window of nothing but refusals, its server CPU less idle CPU.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sibyl.models.catalog import Catalog
from sibyl.models.manifest import OutputSpec
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import DenseRows, FeatureRow, PredictRequest
from tests.faults.harness import Load, OpenLoad, Shot, p99_ms
from tests.faults.scenario import log_tail, stop
from tests.faults.scrape import scrape, value
from tests.support.inproc import serve_subprocess
from tests.support.latency_proxy import LatencyProxy
from tests.support.onnxgen import FEATURES, probability_model
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
MAX_IN_FLIGHT, ROWS, WIDTH = 4, 512, 1024
OVERLOAD, OVERLOAD_S, LONG_OVERLOAD_S = 5.0, 6.0, 10.0  # seconds at 5x: 3 deadlines in CI
WINDOW_S, REFUSE_RATE = 3.0, 400.0  # refusals alone: how long and how fast
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def heavy_onnx(inputs: int) -> bytes:
    """Two hidden layers of WIDTH: ~ROWS x WIDTH^2 multiply-adds per call (milliseconds, off the event loop)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    shapes = {"w1": (inputs, WIDTH), "w2": (WIDTH, WIDTH), "w3": (WIDTH, 1)}
    weights = [
        numpy_helper.from_array((rng.standard_normal(s) / s[0]).astype(np.float32), n) for n, s in shapes.items()
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("MatMul", ["r2", "w3"], ["z"]),
    ]
    return probability_model("heavy", nodes, weights, inputs)


VALUES = np.random.default_rng(0).random((ROWS, 3), np.float32).tobytes()


def request(i: int) -> PredictRequest:
    dense = DenseRows(feature_names=["amount", "age", "rating"], values=VALUES, num_rows=ROWS)
    return PredictRequest(request_id=f"r{i}", predictor="heavy", dense=dense)


def entity_request(i: int) -> PredictRequest:
    """One row of predictor p (tests/support/inproc.publish_models) whose features come from Redis."""
    row = FeatureRow(features={"amount": 1.0}, entities={"store_id": "s1"})
    return PredictRequest(request_id=f"e{i}", predictor="p", context={"consumer_id": "c1"}, rows=[row])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def ok(shots: list[Shot]) -> int:
    return sum(s.code == "OK" for s in shots)


async def test_open_loop_at_5x_capacity_refuses_cheaply_keeps_goodput_and_recovers(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    overload_s = LONG_OVERLOAD_S if pytestconfig.getoption("--runslow") else OVERLOAD_S
    catalog = Catalog(FileStore(tmp_path / "store"))
    catalog.publish(
        "heavy", "1", heavy_onnx(sum(f.dim for f in FEATURES)), FEATURES, OutputSpec(name="probabilities", column=1)
    )
    catalog.promote("heavy", "heavy@1")
    env = {
        "SIBYL_SERVER__MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
        "SIBYL_SERVER__OFFLOAD_ROWS": "1",
        "SIBYL_SERVER__INFERENCE_THREADS": "1",
        "SIBYL_METRICS__PORT": "0",
    }
    proc, port, metrics_port = serve_subprocess(tmp_path, log_to=tmp_path / "server.log", **env)
    target = f"127.0.0.1:{port}"
    try:
        # Capacity: closed loop, one client per admission slot, after a warm-up.
        async with Load(target, request, concurrency=MAX_IN_FLIGHT, pause_s=0.0) as warm:
            await warm.settle(20, timeout_s=60)
        cpu0, t0 = cpu_s(proc.pid), time.monotonic()
        async with Load(target, request, concurrency=MAX_IN_FLIGHT, pause_s=0.0) as closed:
            await asyncio.sleep(4.0)
        at_capacity_s, cpu_at_capacity = time.monotonic() - t0, cpu_s(proc.pid) - cpu0
        answered = sum(o.code == "OK" for o in closed.outcomes)
        capacity = answered / at_capacity_s
        cpu_per_ok = cpu_at_capacity / max(answered, 1)

        # At capacity, open loop at 80% (for an admitted-call p99 to compare with), then 5x, then 50%.
        before = await asyncio.to_thread(scrape, metrics_port)
        rss_before = rss_mib(proc.pid)
        async with OpenLoad(target, request, rate=0.8 * capacity, deadline_s=2.0) as nominal:
            await asyncio.sleep(3.0)
        capacity_p99 = p99_ms(nominal.shots)
        cpu1 = cpu_s(proc.pid)
        async with OpenLoad(target, request, rate=OVERLOAD * capacity, deadline_s=2.0, max_calls=100_000) as over:
            over.mark("start")
            await asyncio.sleep(overload_s)
            over.mark("end")
        cpu_over = cpu_s(proc.pid) - cpu1
        rss_after = rss_mib(proc.pid)
        async with OpenLoad(target, request, rate=0.5 * capacity, deadline_s=2.0) as after:
            after.mark("start")
            await asyncio.sleep(3.0)
        samples = await asyncio.to_thread(scrape, metrics_port)
    finally:
        code = await asyncio.to_thread(stop, proc)
    overload = over.between("start", "end")
    codes = over.codes()
    refused = codes.get("RESOURCE_EXHAUSTED", 0)
    goodput = ok(overload) / overload_s
    admitted_p99 = p99_ms(overload)
    refused_cpu_ms = max(0.0, cpu_over - ok(over.shots) * cpu_per_ok) / max(refused, 1) * 1000
    inferences = value(samples, "sibyl_inference_seconds_count") - value(before, "sibyl_inference_seconds_count")
    late = [s for s in after.shots if s.t >= 1.0]
    first_ok = min((s.t for s in after.shots if s.code == "OK"), default=None)
    print(
        f"\n[overload {OVERLOAD:g}x for {overload_s:g} s] capacity {capacity:.0f} calls/s (closed loop, "
        f"{MAX_IN_FLIGHT} clients), p99 at 80% {capacity_p99:.1f} ms, server CPU {cpu_per_ok * 1000:.2f} ms per "
        f"answered call; sent {len(over.shots)} at {OVERLOAD * capacity:.0f}/s {dict(codes)}; goodput "
        f"{goodput:.0f}/s ({goodput / capacity:.0%} of capacity); admitted p99 {admitted_p99:.1f} ms "
        f"({admitted_p99 / max(capacity_p99, 1e-9):.1f}x); server CPU per refused call ~{refused_cpu_ms:.2f} ms "
        "(rough: a difference of CPU totals); "
        f"RSS {rss_before:.0f} -> {rss_after:.0f} MiB; server: refused "
        f"{value(samples, 'sibyl_rejected_total', reason='overload'):.0f}, inferences {inferences:.0f}; "
        f"after: {dict(after.codes())}, first OK "
        f"{'never' if first_ok is None else f'{first_ok * 1000:.0f} ms'} after the overload ended"
    )
    assert code == 0, log_tail(tmp_path)
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert refused > len(over.shots) / 2, "not overloaded: most calls should have been refused"
    assert value(samples, "sibyl_rejected_total", reason="overload") >= refused
    # Generous bounds (a shared 2-core machine where the client competes with the server); figures printed above.
    assert goodput >= 0.5 * capacity, "refusing calls ate the capacity"
    assert rss_after - rss_before < 100, "memory grew under overload"
    # Recovered: at half capacity the refusals are back to the odd one a latency spike of a shared machine causes
    # with only MAX_IN_FLIGHT slots (seen: 0-5 of ~80), against most calls during the overload.
    refused_late = sorted(round(s.t, 2) for s in late if s.code != "OK")
    assert len(refused_late) <= 0.1 * len(late), f"not recovered 1 s after the overload: refused at {refused_late} s"
    assert set(after.codes()) <= {"OK", "RESOURCE_EXHAUSTED"}, after.codes()
    assert inferences <= ok(nominal.shots) + ok(over.shots) + ok(after.shots) + 5, "refused calls reached inference"


async def test_a_refused_call_costs_the_server_little_cpu(fresh_redis: RedisServer, tmp_path: Path) -> None:
    """The server CPU of refusals alone, measured directly: the 4 admission slots are held by calls waiting on a
    stalled Redis (a 10 s feature budget and a breaker that never opens: each admitted call waits out the budget
    without CPU), so nearly every other call is refused; the server's CPU over a window of refusals, less its
    idle CPU over as long, divided by the calls refused (the few admitted calls' work included)."""
    with LatencyProxy(fresh_redis.port) as proxy:
        env = {
            "SIBYL_SERVER__MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            "SIBYL_FEATURES__BACKEND": "redis",
            "SIBYL_FEATURES__URL": f"redis://{proxy.address}/0",
            "SIBYL_FEATURES__CACHE_TTL_S": "0",
            "SIBYL_FEATURES__BUDGET_MS": "10000",
            "SIBYL_FEATURES__BREAKER_FAILURES": "1000000",  # every admitted call waits out the budget
            "SIBYL_LOG_LEVEL": "INFO",  # the server log says when a drain began, should calls end UNAVAILABLE
            "SIBYL_METRICS__PORT": "0",
        }
        proc, port, _ = serve_subprocess(tmp_path, log_to=tmp_path / "server.log", **env)
        target = f"127.0.0.1:{port}"
        try:
            async with OpenLoad(target, entity_request, rate=50, deadline_s=2.0) as warm:
                await asyncio.sleep(1.0)  # connections, model and Redis pool warm
            idle0 = cpu_s(proc.pid)
            await asyncio.sleep(WINDOW_S)
            idle = cpu_s(proc.pid) - idle0
            proxy.stall()
            async with OpenLoad(target, entity_request, rate=4, deadline_s=15.0) as holders:
                await asyncio.sleep(1.5)  # 4+ calls now wait on Redis, holding every slot
                cpu0 = cpu_s(proc.pid)
                async with OpenLoad(target, entity_request, rate=REFUSE_RATE, deadline_s=2.0) as refused_load:
                    await asyncio.sleep(WINDOW_S)
                busy = cpu_s(proc.pid) - cpu0
                proxy.resume()
        finally:
            code = await asyncio.to_thread(stop, proc)
    codes = refused_load.codes()
    refused = codes.get("RESOURCE_EXHAUSTED", 0)
    per_call_ms = max(0.0, busy - idle) / max(refused, 1) * 1000
    print(
        f"\n[refusals alone] {dict(codes)} in {WINDOW_S:g} s at {REFUSE_RATE:g}/s; server CPU {busy:.2f} s "
        f"(idle {idle:.2f} s over as long): {per_call_ms:.3f} ms per refused call; slot holders {dict(holders.codes())}"
        f"; warm-up {dict(warm.codes())}"
    )
    other = [
        (round(s.t, 2), round(s.latency_s, 3), s.code) for s in refused_load.shots if s.code != "RESOURCE_EXHAUSTED"
    ]
    assert code == 0, log_tail(tmp_path)
    assert refused >= 0.9 * len(refused_load.shots), f"the slots were not all held: {codes} {other[:10]} {other[-10:]}"
    assert per_call_ms < 5.0, "a refusal costs the server as much as real work"  # generous: the target is < 1 ms
