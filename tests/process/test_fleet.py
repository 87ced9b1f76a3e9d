"""A rolling restart of 3 real `sibyl serve` replicas under open-loop load, with a promote just before it: a
stock grpcio round-robin channel with a retry policy and `sibyl.client` both see 0 failed calls, every answered
prediction is in some replica's log, no replica flips back to the old version, every exit code is 0.

The figures (calls, failures by code, p99 before and during the roll) are printed: `pytest -s`. The short form
runs in CI; `--runslow` runs a longer load at a higher rate with two rolls.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import grpc
import pytest

from sibyl.client import AsyncClient
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.process.fleet import Caller, Replica, logged_ids, stock_service_config, targets
from tests.support.inproc import PRIMARY_WEIGHTS
from tests.support.onnxgen import publish_logistic

DEADLINE_S = 2.0
CLIENT_READY_TIMEOUT_S = 60.0  # a precondition, not the property: the restarts line prints how long it took


def publish(store: Path) -> Catalog:
    catalog = Catalog(FileStore(store))
    publish_logistic(catalog, "m", "1", PRIMARY_WEIGHTS, bias=-0.5)
    publish_logistic(catalog, "m", "2", [w * 0.9 for w in PRIMARY_WEIGHTS], bias=-0.4)
    catalog.promote("p", "m@1")
    return catalog


def stock_caller(channel: grpc.aio.Channel, rate: float, max_calls: int) -> Caller:
    stub = PredictionServiceStub(channel)

    async def send(request: PredictRequest) -> tuple[PredictResponse, str]:
        call = stub.Predict(request, timeout=DEADLINE_S)
        response: PredictResponse = await call
        return response, str(dict(await call.trailing_metadata() or ()).get("sibyl-worker", ""))

    return Caller("stock grpcio", send, rate, max_calls)


def sibyl_caller(client: AsyncClient, rate: float, max_calls: int) -> Caller:
    stub = PredictionServiceStub(client.channel)  # the client's own channel, for the trailer; its options as given

    async def send(request: PredictRequest) -> tuple[PredictResponse, str]:
        call = stub.Predict(request, timeout=client.timeout_s)
        response: PredictResponse = await call
        return response, str(dict(await call.trailing_metadata() or ()).get("sibyl-worker", ""))

    return Caller("sibyl.client", send, rate, max_calls)


async def until_answering(callers: list[Caller], pid: int) -> None:
    """Until every caller has had an answer from the process `pid` (its clients connected to the new replica),
    as a rollout waits for a replaced pod to take traffic before it replaces the next."""
    deadline = asyncio.get_running_loop().time() + CLIENT_READY_TIMEOUT_S
    while not all(caller.answered_by(pid) for caller in callers):
        if asyncio.get_running_loop().time() > deadline:
            waiting = [caller.name for caller in callers if not caller.answered_by(pid)]
            recent = {c.name: Counter(o.worker for o in c.outcomes[-300:]) for c in callers}
            raise AssertionError(f"{waiting}: no answer from the restarted replica {pid}; recent answers by {recent}")
        await asyncio.sleep(0.05)


async def roll(tmp_path: Path, rate: float, rolls: int) -> None:
    store = tmp_path / "store"
    catalog = publish(store)
    replicas = [Replica(i, tmp_path, store) for i in range(3)]
    loop = asyncio.get_running_loop()
    steps: list[tuple[float, float, float]] = []  # per restart: SIGTERM to exit, start to SERVING, to answering
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        target = targets(replicas)
        options = [("grpc.service_config", json.dumps(stock_service_config())), ("grpc.enable_retries", 1)]
        async with (
            grpc.aio.insecure_channel(target, options=options) as channel,
            AsyncClient(target, timeout_s=DEADLINE_S) as client,
        ):
            callers = [stock_caller(channel, rate, 100_000), sibyl_caller(client, rate, 100_000)]
            for caller in callers:
                caller.start()
            await asyncio.sleep(2.0)
            for caller in callers:
                caller.mark("promote")
            catalog.promote("p", "m@2")
            await asyncio.sleep(2.0)
            for caller in callers:
                caller.mark("roll")
            for _ in range(rolls):
                for replica in replicas:
                    t0 = loop.time()
                    assert await replica.stop() == 0, replica.tail()
                    t1 = loop.time()
                    await replica.start()
                    t2 = loop.time()
                    await until_answering(callers, replica.pids[-1])
                    steps.append((t1 - t0, t2 - t1, loop.time() - t2))
            for caller in callers:
                caller.mark("rolled")
            await asyncio.sleep(2.0)
            for caller in callers:
                await caller.stop()
        for replica in replicas:
            assert await replica.stop() == 0, replica.tail()
    finally:
        for replica in replicas:
            replica.kill()

    logged = logged_ids(replicas)
    for caller in callers:
        print("\n" + caller.summary("promote", ("roll", "rolled")))
    print(
        "restarts (exit, serving, answering both clients), s: "
        + "; ".join(f"{a:.2f} {b:.2f} {c:.2f}" for a, b, c in steps)
    )
    drains = [d for r in replicas for d in r.drains()]
    keys = ("seconds", "refused", "connections_closed", "in_flight_left")
    print("drains: " + "; ".join(", ".join(f"{k} {d.get(k)}" for k in keys) for d in drains))
    for caller in callers:
        answered = {o.prediction_id for o in caller.outcomes if o.code == "OK"}
        failed = caller.failed()
        assert not failed, (
            f"{caller.name}: {len(failed)} failed calls: {[(o.code, round(o.t, 2)) for o in failed[:10]]}"
        )
        assert answered <= logged, f"{caller.name}: {len(answered - logged)} answered predictions not in any log"
        flips = caller.flip_backs("2")
        assert not flips, f"{caller.name}: {len(flips)} answers from version 1 after version 2: {flips[:3]}"
        assert any(o.version == "2" for o in caller.outcomes), f"{caller.name}: the promote was never seen"


@pytest.mark.timeout(300)
async def test_rolling_restart_fails_no_call(tmp_path: Path) -> None:
    await roll(tmp_path, rate=75.0, rolls=1)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_rolling_restart_fails_no_call_long(tmp_path: Path) -> None:
    await roll(tmp_path, rate=150.0, rolls=3)
