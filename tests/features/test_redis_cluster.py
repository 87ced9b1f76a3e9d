"""The same reader and writer against a real 3-node Redis Cluster."""

from __future__ import annotations

import os
from typing import cast

import redis
from prometheus_client import CollectorRegistry

from sibyl.config import FeatureSettings
from sibyl.features import build_fetcher
from sibyl.features.fetcher import Fetcher
from sibyl.features.redis import RedisFeatureStore
from sibyl.models.manifest import FeatureSpec
from sibyl.observability.metrics import Metrics
from tests.support.servers import RedisCluster

ORDERS = FeatureSpec(name="orders", entity="consumer_id")
EMB = FeatureSpec(name="emb", entity="consumer_id", dtype="float_vector", dim=2, default=(0.0, 0.0))


def _hmget_calls(cluster: RedisCluster) -> list[int]:
    calls = []
    for port in cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port)
        calls.append(int(node.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)))
        node.close()
    return calls


async def test_cluster_fetch_is_one_pipeline_per_node(redis_cluster: RedisCluster) -> None:
    settings = FeatureSettings(
        backend="redis-cluster", url=redis_cluster.url, prefix=f"c{os.getpid()}:v1", cache_ttl_s=0, budget_ms=30_000
    )  # a budget no busy machine misses: this test is about pipelines, not the budget (test_redis.py tests that)
    fetcher = cast(Fetcher, build_fetcher(settings, Metrics(CollectorRegistry())))
    store = cast(RedisFeatureStore, fetcher.store)
    assert store.name == "redis-cluster"
    rows = [("consumer_id", str(i), {"orders": float(i), "emb": [i, -i]}) for i in range(60)]
    assert await store.write_entities(rows) == 60

    before, trips = _hmget_calls(redis_cluster), store.round_trips
    wanted = {("consumer_id", str(i)): [ORDERS, EMB] for i in range(-5, 60)}  # 5 unknown ids
    result = await fetcher.fetch(wanted)
    after = _hmget_calls(redis_cluster)

    assert not result.degraded and len(result.values) == 60
    assert result.values[("consumer_id", "42")]["orders"] == 42.0
    assert result.values[("consumer_id", "42")]["emb"].tolist() == [42.0, -42.0]
    per_node = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(per_node) == 65  # one HMGET per entity, spread over the nodes
    assert store.round_trips - trips == sum(1 for n in per_node if n) == 3  # one pipeline per node, sent together
    await fetcher.close()
