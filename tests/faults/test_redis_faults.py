"""Redis killed (SIGKILL) and restarted under load: calls keep answering with defaults, then features return."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sibyl.config import FeatureSettings
from sibyl.features import build_store
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import Load, Outcome, logged_ids_from_file, report
from tests.support.inproc import publish_models, running_server
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

CONSUMERS, STORES = 20, 5


def request(i: int) -> PredictRequest:
    row = FeatureRow(features={"amount": 1.0}, entities={"store_id": f"s{i % STORES}"})
    return PredictRequest(request_id=f"r{i}", predictor="p", context={"consumer_id": f"c{i % CONSUMERS}"}, rows=[row])


def from_store(o: Outcome) -> bool:
    return o.response is not None and not o.response.defaulted


async def load_features(url: str) -> None:
    """What an operator's loader does after Redis comes back empty (no persistence in this test)."""
    store = build_store(FeatureSettings(backend="redis", url=url))
    consumers = [("consumer_id", f"c{i}", {"age": 20.0 + i, "emb": [0.1, 0.2]}) for i in range(CONSUMERS)]
    stores = [("store_id", f"s{i}", {"rating": 3.0 + i / 10}) for i in range(STORES)]
    try:
        await store.write_entities(consumers + stores)
    finally:
        await store.close()


async def test_redis_killed_and_restarted_under_load(fresh_redis: RedisServer, tmp_path: Path) -> None:
    publish_models(tmp_path / "store")
    await load_features(fresh_redis.url)
    features = {
        "backend": "redis", "url": fresh_redis.url, "budget_ms": 50, "cache_ttl_s": 0,  # no cache: every call asks Redis
        "breaker_failures": 3, "breaker_reset_s": 0.5,
    }  # fmt: skip
    try:
        async with running_server(tmp_path, features=features) as server:
            async with Load(f"127.0.0.1:{server.port}", request) as load:
                await load.wait_for(from_store)
                load.mark("fault")
                fresh_redis.kill()
                await load.settle(200)
                await asyncio.sleep(0.5)
                load.mark("repair")
                fresh_redis.start()
                await load_features(fresh_redis.url)
                load.mark("reloaded")
                await load.wait_for(from_store)
            fault, repair = load.marks["fault"], load.marks["repair"]
            defaulted_during = sum(1 for o in load.outcomes if fault <= o.t < repair and not from_store(o))
            errors = server.metrics.registry.get_sample_value(
                "sibyl_feature_store_errors_total", {"kind": "connection"}
            )
    finally:
        fresh_redis.start()
    recovery = {
        "first answer from Redis after restart": load.first(from_store, "repair"),
        "after features reloaded": load.first(from_store, "reloaded"),
    }
    print(f"\n[redis] answered with defaults while down: {defaulted_during}; store errors counted: {errors}")
    report("redis killed", load, logged_ids_from_file([tmp_path / "predictions.jsonl"]), recovery)
    assert set(load.codes()) == {"OK"}  # Redis down costs feature values, never a call
    assert defaulted_during > 0  # the fault was real
