"""The Redis feature reader against a real redis-server: values, one round trip, cache, budget, breaker."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry

from sibyl.config import FeatureSettings
from sibyl.features import build_fetcher
from sibyl.features.cache import FeatureCache
from sibyl.features.codec import entity_key, field_name
from sibyl.features.fetcher import Fetcher
from sibyl.features.redis import RedisFeatureStore
from sibyl.models.manifest import FeatureSpec
from sibyl.observability.metrics import Metrics
from sibyl.serving import assembly
from sibyl.serving.decode import RowBatch
from tests.support.servers import RedisServer

ORDERS = FeatureSpec(name="orders", entity="consumer_id", default=-1.0)
EMB = FeatureSpec(name="emb", entity="consumer_id", dtype="float_vector", dim=3, default=(0.0,) * 3)
TAGS = FeatureSpec(name="tags", entity="consumer_id", dtype="int_list", dim=4, default=(0.0,) * 4)
RATING = FeatureSpec(name="rating", entity="store_id", default=-1.0)
PREP = FeatureSpec(name="prep", entity="store_id", default=-1.0)
MODEL_A = [ORDERS, EMB, RATING]
MODEL_B = [ORDERS, TAGS, PREP, RATING]  # overlaps A on orders and rating


def _settings(server: RedisServer, **kw: Any) -> FeatureSettings:
    base: dict[str, Any] = {"backend": "redis", "url": server.url, "prefix": f"t{os.getpid()}:v1", "budget_ms": 30_000}
    return FeatureSettings(**(base | kw))


def _fetcher(settings: FeatureSettings) -> tuple[Fetcher, CollectorRegistry]:
    registry = CollectorRegistry()
    return cast(Fetcher, build_fetcher(settings, Metrics(registry))), registry


def _store(fetcher: Fetcher) -> RedisFeatureStore:
    return cast(RedisFeatureStore, fetcher.store)


def _hmget_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


async def _seed(fetcher: Fetcher) -> None:
    rows = [
        ("consumer_id", str(c), {"orders": float(c), "emb": [c, c + 0.5, -c], "tags": [c, 2 * c]}) for c in range(1, 6)
    ]
    rows += [("store_id", f"s{s}", {"rating": 4.0 + s / 10, "prep": 10.0 * s}) for s in range(1, 4)]
    rows.append(("consumer_id", "5", {"tags": [1, 2, 3, 4, 5, 6]}))  # overwrite: longer than dim
    await _store(fetcher).write_entities(rows, {"tags": "int_list"})


def _plan() -> tuple[assembly.Plan, RowBatch]:
    """Eight rows over five consumers (one unknown) and three stores, scored by two overlapping models."""
    consumers = ["1", "2", "2", "3", "4", "5", "99", "1"]
    stores = ["s1", "s2", "s3", "s1", "s2", "s3", "s1", "s2"]
    batch = RowBatch(
        num_rows=8,
        names=[],
        values=np.empty((8, 0), np.float32),
        shared_entities={},
        row_entities={"consumer_id": consumers, "store_id": stores},
    )
    models = [SimpleNamespace(manifest=SimpleNamespace(inputs=inputs)) for inputs in (MODEL_A, MODEL_B)]
    return assembly.plan(batch, models), batch  # type: ignore[arg-type]


async def test_overlapping_models_and_many_entities_in_one_round_trip(fresh_redis: RedisServer) -> None:
    fetcher, registry = _fetcher(_settings(fresh_redis, cache_ttl_s=0))
    await _seed(fetcher)
    plan, batch = _plan()
    assert len(plan.wanted) == 9  # 6 consumers (one unknown) + 3 stores, each once
    assert sorted(s.name for s in plan.wanted[("consumer_id", "1")]) == ["emb", "orders", "tags"]
    client = redis.Redis.from_url(fresh_redis.url)
    client.config_resetstat()
    before = _store(fetcher).round_trips

    result = await fetcher.fetch(plan.wanted)

    assert _store(fetcher).round_trips - before == 1  # one pipeline execution
    assert _hmget_calls(client) == 9  # one HMGET per entity, none per feature
    assert not result.degraded
    c2 = result.values[("consumer_id", "2")]
    assert c2["orders"] == 2.0 and c2["emb"].tolist() == [2.0, 2.5, -2.0] and c2["tags"].tolist() == [2, 4, 0, 0]
    assert result.values[("consumer_id", "5")]["tags"].tolist() == [1, 2, 3, 4]
    assert ("consumer_id", "99") not in result.values
    assert result.values[("store_id", "s3")] == {"rating": pytest.approx(4.3), "prep": 30.0}

    assert assembly.fill(plan, batch, result.values) > 0
    assert {k: v.tolist() for k, v in assembly.defaulted(plan).items()} == {"orders": [6], "emb": [6], "tags": [6]}
    assert registry.get_sample_value("sibyl_feature_fetch_seconds_count", {"backend": "redis"}) == 1
    client.close()
    await fetcher.close()


async def test_cache_hits_skip_redis_and_expire_after_ttl(fresh_redis: RedisServer) -> None:
    fetcher, registry = _fetcher(_settings(fresh_redis))
    await _seed(fetcher)
    now = [0.0]
    fetcher.cache = FeatureCache(ttl_s=30, max_entries=100, clock=lambda: now[0])
    client = redis.Redis.from_url(fresh_redis.url)
    wanted = {("consumer_id", "1"): [ORDERS, EMB], ("consumer_id", "404"): [ORDERS]}

    client.config_resetstat()
    first = await fetcher.fetch(wanted)
    second = await fetcher.fetch(wanted)
    assert _hmget_calls(client) == 2  # only the first fetch went to Redis; the absent entity is cached too
    assert second.values.keys() == first.values.keys() == {("consumer_id", "1")}
    assert second.values[("consumer_id", "1")]["orders"] == 1.0
    assert registry.get_sample_value("sibyl_feature_cache_total", {"result": "miss"}) == 2
    assert registry.get_sample_value("sibyl_feature_cache_total", {"result": "hit"}) == 2

    await fetcher.fetch({("consumer_id", "1"): [ORDERS, TAGS]})  # a feature the entry lacks: a miss
    assert _hmget_calls(client) == 3

    client.hset(
        entity_key(fetcher.store.prefix, "consumer_id", "1"), field_name("orders", "xxh32"), np.float32(7).tobytes()
    )  # type: ignore[attr-defined]
    assert (await fetcher.fetch({("consumer_id", "1"): [ORDERS]})).values[("consumer_id", "1")]["orders"] == 1.0
    now[0] += 30  # TTL over: Redis again, and the new value
    assert (await fetcher.fetch({("consumer_id", "1"): [ORDERS]})).values[("consumer_id", "1")]["orders"] == 7.0
    assert _hmget_calls(client) == 4
    client.close()
    await fetcher.close()


async def test_undecodable_value_is_missing_and_counted(fresh_redis: RedisServer) -> None:
    fetcher, registry = _fetcher(_settings(fresh_redis, cache_ttl_s=0))
    client = redis.Redis.from_url(fresh_redis.url)
    key = entity_key(_store(fetcher).prefix, "consumer_id", "1")
    client.hset(key, mapping={field_name("orders", "xxh32"): b"\x01\x02", field_name("emb", "xxh32"): b"x" * 12})
    client.set(entity_key(_store(fetcher).prefix, "consumer_id", "2"), "a string, not a hash")
    result = await fetcher.fetch({("consumer_id", "1"): [ORDERS, EMB]})
    assert result.values[("consumer_id", "1")]["emb"].shape == (3,)  # 12 bytes fit a float32[3]
    assert "orders" not in result.values[("consumer_id", "1")]
    assert registry.get_sample_value("sibyl_feature_store_errors_total", {"kind": "decode"}) == 1
    # A key of the wrong Redis type spoils that entity only: not degraded, other entities still read.
    result = await fetcher.fetch({("consumer_id", "2"): [ORDERS], ("consumer_id", "1"): [EMB]})
    assert not result.degraded and list(result.values) == [("consumer_id", "1")]
    assert registry.get_sample_value("sibyl_feature_store_errors_total", {"kind": "decode"}) == 2
    client.close()
    await fetcher.close()


async def test_bulk_reply_read_equals_redis_py_read_per_reply(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hiredis parses a fetch's replies in bulk (compat.redis_replies); redis-py's read_response per reply is the
    fallback. Both read the same values from 3,000 entities (replies over many socket reads), with a key of the
    wrong type and an unknown entity among them."""
    from sibyl.compat import redis_replies

    fetcher, _ = _fetcher(_settings(fresh_redis, cache_ttl_s=0))
    rows = [("consumer_id", str(c), {"orders": float(c), "emb": [c, -c, 0.5], "tags": [c]}) for c in range(3_000)]
    await _store(fetcher).write_entities(rows, {"tags": "int_list"})
    client = redis.Redis.from_url(fresh_redis.url)
    client.set(entity_key(_store(fetcher).prefix, "consumer_id", "1500"), "a string, not a hash")
    client.close()
    wanted = {("consumer_id", str(c)): [ORDERS, EMB, TAGS] for c in [*range(3_000), 123_456]}
    one_by_one = 0
    read_one = redis_replies._read_one

    async def counted(conn: Any) -> Any:
        nonlocal one_by_one
        one_by_one += 1
        return await read_one(conn)

    monkeypatch.setattr(redis_replies, "_read_one", counted)
    bulk = await fetcher.fetch(wanted)
    assert one_by_one == 0  # the bulk path, not the fallback
    monkeypatch.setattr(redis_replies, "READER", None)  # as without hiredis
    per_reply = await fetcher.fetch(wanted)
    assert one_by_one == len(wanted)
    assert not bulk.degraded and not per_reply.degraded
    assert len(bulk.values) == 2_999  # the wrong-type key and the unknown entity are missing
    assert bulk.values.keys() == per_reply.values.keys()
    for key, values in bulk.values.items():
        other = per_reply.values[key]
        assert values["orders"] == other["orders"] == float(key[1])
        assert np.array_equal(values["emb"], other["emb"]) and np.array_equal(values["tags"], other["tags"])
    again = await fetcher.fetch({("consumer_id", "7"): [ORDERS]})  # the pooled connection is still in step
    assert again.values == {("consumer_id", "7"): {"orders": 7.0}}
    await fetcher.close()


async def test_slow_redis_returns_within_budget_degraded(fresh_redis: RedisServer) -> None:
    # A budget a busy machine cannot miss while Redis answers, far shorter than the pause it is tested against.
    fetcher, registry = _fetcher(_settings(fresh_redis, cache_ttl_s=0, budget_ms=300, breaker_failures=100))
    await _seed(fetcher)
    client = redis.Redis.from_url(fresh_redis.url)
    assert not (await fetcher.fetch({("consumer_id", "1"): [ORDERS]})).degraded  # connection made
    client.execute_command("CLIENT", "PAUSE", "3000", "ALL")  # the real server stops answering for 3 s
    result = await fetcher.fetch({("consumer_id", "1"): [ORDERS]})
    assert result.degraded and result.values == {}
    assert registry.get_sample_value("sibyl_feature_store_errors_total", {"kind": "timeout"}) == 1
    result = await fetcher.fetch({("consumer_id", "1"): [ORDERS]}, budget_s=0.010)  # the caller's deadline wins
    assert result.degraded
    deadline = asyncio.get_running_loop().time() + 15
    while result.degraded and asyncio.get_running_loop().time() < deadline:  # until the pause is over
        await asyncio.sleep(0.2)
        result = await fetcher.fetch({("consumer_id", "1"): [ORDERS]})  # after a cancelled read the client recovers
    assert not result.degraded and result.values[("consumer_id", "1")]["orders"] == 1.0
    client.close()
    await fetcher.close()


async def test_breaker_opens_when_redis_dies_and_closes_when_it_returns(fresh_redis: RedisServer) -> None:
    settings = _settings(fresh_redis, cache_ttl_s=0, breaker_failures=2, breaker_reset_s=0.3, budget_ms=200)
    fetcher, registry = _fetcher(settings)
    await _seed(fetcher)
    wanted = {("consumer_id", "3"): [ORDERS, EMB]}

    def errors() -> float:
        return sum(
            registry.get_sample_value("sibyl_feature_store_errors_total", {"kind": k}) or 0
            for k in ("timeout", "connection", "other")
        )

    assert (await fetcher.fetch(wanted)).values[("consumer_id", "3")]["orders"] == 3.0
    fresh_redis.stop()
    try:
        for _ in range(2):
            result = await fetcher.fetch(wanted)
            assert result.degraded and result.values == {}
        assert registry.get_sample_value("sibyl_feature_circuit_open") == 1
        tried = errors()
        for _ in range(5):  # open: no calls to the dead server at all
            assert (await fetcher.fetch(wanted)).degraded
        assert errors() == tried
        await asyncio.sleep(0.35)
        assert (await fetcher.fetch(wanted)).degraded  # the probe fails: open again
        assert errors() == tried + 1
    finally:
        fresh_redis.start()
    await _seed(fetcher)  # the restarted server has no persistence
    deadline = asyncio.get_running_loop().time() + 5
    result = await fetcher.fetch(wanted)
    while result.degraded and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        result = await fetcher.fetch(wanted)
    assert not result.degraded and result.values[("consumer_id", "3")]["orders"] == 3.0
    assert registry.get_sample_value("sibyl_feature_circuit_open") == 0
    await fetcher.close()


def _circuit_open(registry: CollectorRegistry) -> bool:
    return registry.get_sample_value("sibyl_feature_circuit_open") == 1


async def test_short_caller_deadlines_do_not_open_the_breaker(fresh_redis: RedisServer) -> None:
    """Redis hangs for less than features.budget_ms: callers with short deadlines give up (defaults), but that is
    their deadline, not a Redis failure; a caller with time to wait still gets the values."""
    settings = _settings(fresh_redis, cache_ttl_s=0, budget_ms=3000, breaker_failures=3, breaker_reset_s=60)
    fetcher, registry = _fetcher(settings)
    await _seed(fetcher)
    wanted = {("consumer_id", "2"): [ORDERS]}
    assert not (await fetcher.fetch(wanted)).degraded
    client = redis.Redis.from_url(fresh_redis.url)
    client.execute_command("CLIENT", "PAUSE", "600", "ALL")  # the real server answers nobody for 600 ms
    short = await asyncio.gather(*(fetcher.fetch(wanted, budget_s=0.01) for _ in range(10)))
    assert all(r.degraded for r in short)
    assert not _circuit_open(registry), "ten callers' own 10 ms deadlines opened the circuit for everyone"
    patient = await fetcher.fetch(wanted)  # waits out the pause within the configured budget
    assert not patient.degraded and patient.values[("consumer_id", "2")]["orders"] == 2.0
    assert not (await fetcher.fetch(wanted, budget_s=2.0)).degraded  # under the budget: fine once Redis is fast
    errors = [registry.get_sample_value("sibyl_feature_store_errors_total", {"kind": k}) for k in ("timeout", "other")]
    assert errors == [None, None], "the fetches the short callers left finished within the budget: no error"
    client.close()
    await fetcher.close()


async def test_the_configured_budget_still_opens_the_breaker_for_short_callers(fresh_redis: RedisServer) -> None:
    """Redis hangs for longer than features.budget_ms: the fetches short callers left behind time out at the
    configured budget, which is a Redis failure, so the circuit opens even if every caller was in a hurry."""
    settings = _settings(fresh_redis, cache_ttl_s=0, budget_ms=100, breaker_failures=3, breaker_reset_s=60)
    fetcher, registry = _fetcher(settings)
    await _seed(fetcher)
    wanted = {("consumer_id", "2"): [ORDERS]}
    assert not (await fetcher.fetch(wanted)).degraded
    client = redis.Redis.from_url(fresh_redis.url)
    client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    short = await asyncio.gather(*(fetcher.fetch(wanted, budget_s=0.01) for _ in range(5)))
    assert all(r.degraded for r in short)

    def timeouts() -> float | None:
        return registry.get_sample_value("sibyl_feature_store_errors_total", {"kind": "timeout"})

    # The left-behind fetches end at the 100 ms budget; wait for all five, not only the three that open the
    # circuit (on a loaded box the last ones are reported some milliseconds after the third).
    for _ in range(100):
        if timeouts() == 5:
            break
        await asyncio.sleep(0.02)
    assert _circuit_open(registry)
    assert timeouts() == 5
    client.execute_command("CLIENT", "UNPAUSE")
    client.close()
    await fetcher.close()
