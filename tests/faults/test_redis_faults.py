"""Redis killed (then restarted empty and reloaded) and Redis hung (SIGSTOP), under steady open-loop load (100
calls/s, 2 s deadline each) through a real `sibyl serve`: every call answers OK (missing features take their
defaults while Redis is gone), then features come back from Redis. Prints the fault-table row: failed calls, p99
during the fault, recovery time. The fault lasts 5 s in CI (the breaker opens and probes at its 2 s reset at least
twice: the same path as a longer fault) and 10 s with --runslow (the length of the runs in docs/reliability.md)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from sibyl.config import FeatureSettings
from sibyl.features import build_store
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import OpenLoad, Shot, logged_ids_from_file
from tests.faults.scenario import Action, Figures, log_tail, run_fault, start_server, stop
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

CONSUMERS, STORES = 20, 5


def request(i: int) -> PredictRequest:
    row = FeatureRow(features={"amount": 1.0}, entities={"store_id": f"s{i % STORES}"})
    return PredictRequest(request_id=f"r{i}", predictor="p", context={"consumer_id": f"c{i % CONSUMERS}"}, rows=[row])


def from_redis(shot: Shot) -> bool:
    return shot.response is not None and not shot.response.defaulted


async def load_features(url: str) -> None:
    """What an operator's loader does after Redis comes back empty (no persistence in this test)."""
    store = build_store(FeatureSettings(backend="redis", url=url))
    consumers = [("consumer_id", f"c{i}", {"age": 20.0 + i, "emb": [0.1, 0.2]}) for i in range(CONSUMERS)]
    stores = [("store_id", f"s{i}", {"rating": 3.0 + i / 10}) for i in range(STORES)]
    try:
        await store.write_entities(consumers + stores)
    finally:
        await store.close()


def faults(redis: RedisServer) -> dict[str, tuple[Action, Action]]:
    async def kill(_: OpenLoad) -> None:
        await asyncio.to_thread(redis.kill)

    async def restart_and_reload(_: OpenLoad) -> None:
        await asyncio.to_thread(redis.start)
        await load_features(redis.url)

    async def hang(_: OpenLoad) -> None:
        os.kill(redis.pid, signal.SIGSTOP)

    async def resume(_: OpenLoad) -> None:
        os.kill(redis.pid, signal.SIGCONT)

    return {"killed": (kill, restart_and_reload), "hung": (hang, resume)}


@pytest.mark.parametrize("fault", ["killed", "hung"])
async def test_redis_fault_under_open_loop_load(
    fault: str, fresh_redis: RedisServer, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    fault_s = 10.0 if pytestconfig.getoption("--runslow") else 5.0
    await load_features(fresh_redis.url)
    env = {
        "SIBYL_FEATURES__BACKEND": "redis",
        "SIBYL_FEATURES__URL": fresh_redis.url,
        "SIBYL_FEATURES__CACHE_TTL_S": "0",  # every call asks Redis: the fault is not hidden by the cache
        "SIBYL_METRICS__PORT": "0",
    }  # budget_ms (20) and the breaker (5 failures, 2 s reset) stay at their defaults
    proc, port = start_server(tmp_path, **env)
    break_it, repair = faults(fresh_redis)[fault]
    try:
        load = await run_fault(port, request, break_it, repair, healthy=from_redis, fault_s=fault_s)
    finally:
        if fault == "hung":
            os.kill(fresh_redis.pid, signal.SIGCONT)
        fresh_redis.start()  # the session server must be running for the next test
        code = await asyncio.to_thread(stop, proc)
    figures = Figures(f"redis {fault} {fault_s:.0f} s", load, healthy=from_redis)
    print("\n" + figures.row())
    assert code == 0, log_tail(tmp_path)
    assert not figures.failed, f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert sum(from_redis(s) for s in figures.during) < len(figures.during), "the fault was not real"
    assert figures.recovery_s() is not None, "features never came back from Redis"
    logged = logged_ids_from_file([tmp_path / "predictions.jsonl"])
    assert load.answered() <= logged, f"{len(load.answered() - logged)} answered predictions missing from the log"
