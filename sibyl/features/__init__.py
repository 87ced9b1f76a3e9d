"""Features the request lacks: in-process cache, then a store (memory, Redis, Redis Cluster, Feast), then defaults.

`build_fetcher(settings, metrics)` is the one entry point for the server; `build_store(settings)` gives the bare
backend (with its writer) to the loader, the CLI, tests and benchmarks.

The request path: the store interface (base), the embedded store (memory) and Redis or Redis Cluster (redis),
the Redis layout and value encoding (codec), a Feast online store in Redis (feast_redis, its layout in
feast_codec, one feature's values across entities decoded at once in feast_columns), the TTL cache (cache), the circuit breaker (breaker), and the fetcher that puts them together
within a budget (fetcher); the backend's settings (settings). Bulk work: the blocking reader
and writer of batch jobs (bulk) and the blocking reader of a Feast store (feast_bulk), the loader (loader) and its
input files (sources), and the specs that say how a column is encoded (specs). `sibyl features check`: Feast's
file registry read by hand (feast_registry) and the checks of a mapping against it and a live store (feast_check).

May import (tests/test_layout.py RANK): models (feature specs of manifests), observability, errors and the
generated v1/kserve code; never predlog (same rank) or anything above.
"""

from __future__ import annotations

from sibyl.features.base import FeatureFetcher
from sibyl.features.breaker import CircuitBreaker
from sibyl.features.cache import FeatureCache
from sibyl.features.feast_redis import FeastRedisStore
from sibyl.features.fetcher import Fetcher, NullFetcher
from sibyl.features.memory import MemoryFeatureStore
from sibyl.features.redis import RedisFeatureStore, connect
from sibyl.features.settings import FeatureSettings
from sibyl.observability.metrics import Metrics

__all__ = ["FeastRedisStore", "MemoryFeatureStore", "RedisFeatureStore", "build_fetcher", "build_store"]


def build_store(settings: FeatureSettings) -> MemoryFeatureStore | RedisFeatureStore | FeastRedisStore:
    """The configured backend, not yet wrapped; "none" has no store (ValueError)."""
    if settings.backend == "memory":
        return MemoryFeatureStore.from_jsonl(settings.memory_file)
    if settings.backend in ("redis", "redis-cluster"):
        client = connect(settings.url, cluster=settings.backend == "redis-cluster")
        return RedisFeatureStore(client, settings.prefix, settings.field_hash)
    if settings.backend == "feast-redis":  # Feast's RedisOnlineStore layout (feast_redis)
        return FeastRedisStore(connect(settings.url, cluster=settings.feast.cluster), settings.feast)
    raise ValueError(f"features backend {settings.backend!r} has no store")


def build_fetcher(settings: FeatureSettings, metrics: Metrics) -> FeatureFetcher:
    if settings.backend == "none":
        return NullFetcher()
    store = build_store(settings)
    budget_s = settings.budget_ms / 1000
    if isinstance(store, MemoryFeatureStore):  # already in process: a cache or a breaker would add nothing
        fetcher = Fetcher(store, metrics, budget_s)
    else:
        cache = FeatureCache(settings.cache_ttl_s, settings.cache_max_entries)
        breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s, metrics.feature_circuit_open)
        metrics.feature_circuit_open.set(0)
        fetcher = Fetcher(store, metrics, budget_s, cache, breaker)
    store.on_decode_error = fetcher.on_decode_error
    if isinstance(store, FeastRedisStore):
        store.on_stale = lambda view, count: metrics.feature_stale.labels(view).inc(count)
    return fetcher
