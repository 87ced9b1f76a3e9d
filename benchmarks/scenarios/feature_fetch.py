"""Fetch latency against a real local redis-server: 100 entities x 20 features, with and without the cache.

python -m benchmarks.scenarios.feature_fetch [--entities 100] [--features 20] [--fetches 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import cast

import numpy as np
from prometheus_client import CollectorRegistry

from sibyl.features import build_fetcher
from sibyl.features.fetcher import Fetcher
from sibyl.features.redis import RedisFeatureStore
from sibyl.features.settings import FeatureSettings
from sibyl.models.manifest import FeatureSpec
from sibyl.observability.metrics import Metrics
from tests.support.servers import RedisServer


def _specs(n: int) -> list[FeatureSpec]:
    vectors = [
        FeatureSpec(name=f"emb{i}", entity="consumer_id", dtype="float_vector", dim=16, default=(0.0,) * 16)
        for i in range(2)
    ]
    return vectors + [FeatureSpec(name=f"f{i}", entity="consumer_id") for i in range(n - len(vectors))]


async def _measure(fetcher: Fetcher, wanted: dict, fetches: int) -> np.ndarray:  # type: ignore[type-arg]
    for _ in range(50):  # warm-up: connection, caches
        await fetcher.fetch(wanted)
    times = np.empty(fetches)
    for i in range(fetches):
        start = time.perf_counter()
        result = await fetcher.fetch(wanted, budget_s=1.0)
        times[i] = time.perf_counter() - start
        assert not result.degraded and len(result.values) == len(wanted)
    return times * 1000


def _line(label: str, ms: np.ndarray) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"{label:<28} p50 {p50:6.3f} ms   p99 {p99:6.3f} ms   mean {ms.mean():6.3f} ms   n={len(ms)}"


async def run(url: str, entities: int, features: int, fetches: int) -> list[str]:
    specs = _specs(features)
    wanted = {("consumer_id", str(i)): specs for i in range(entities)}
    lines = []
    for label, ttl in (("redis, no cache", 0.0), ("redis, cache (all hits)", 60.0)):
        settings = FeatureSettings(backend="redis", url=url, prefix="bench:v1", cache_ttl_s=ttl, budget_ms=1000)
        fetcher = cast(Fetcher, build_fetcher(settings, Metrics(CollectorRegistry())))
        rows = [
            ("consumer_id", str(i), {s.name: [0.5] * s.dim if s.dtype == "float_vector" else float(i) for s in specs})
            for i in range(entities)
        ]
        await cast(RedisFeatureStore, fetcher.store).write_entities(rows)
        lines.append(_line(label, await _measure(fetcher, wanted, fetches)))
        await fetcher.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--fetches", type=int, default=2000)
    args = parser.parse_args()
    with RedisServer() as server:
        print(f"{args.entities} entities x {args.features} features per fetch, {args.fetches} fetches")
        for line in asyncio.run(run(server.url, args.entities, args.features, min(args.fetches, 100_000))):
            print(line)


if __name__ == "__main__":
    main()
