"""Redis slow rather than dead, behind tests/support/latency_proxy: +50 ms and +500 ms on every answer, then a
stall (no byte either way, connections open), each for 6 s under steady open-loop load (100 calls/s, 2 s
deadline each) through a real `sibyl serve` with its feature budget at the default 20 ms and no cache.

Every call answers OK (features the budget could not wait for take their defaults), the server's own
sibyl_feature_fetch_seconds histogram holds 99% of the fetches within a bound set from the budget, every answered
prediction is in the log, and features come from Redis again once the proxy is fast."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from sibyl.config import FeatureSettings
from sibyl.features import build_store
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import OpenLoad, Shot, logged_ids_from_file
from tests.faults.scenario import Figures, log_tail, run_fault, stop
from tests.faults.scrape import histogram_delta, quantile_bound, scrape
from tests.support.inproc import serve_subprocess
from tests.support.latency_proxy import LatencyProxy
from tests.support.servers import RedisServer
from tests.support.workers import answering

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

CONSUMERS, STORES = 20, 5
BUDGET_S = 0.020  # FeatureSettings.budget_ms's default
# The p99 bound: the budget plus room for a busy event loop on a shared 2-core machine (5 agents at once put the
# +50 ms case's p99 in the 50 ms bucket). That a fetch never waited for the slow Redis is shown by a count: calls
# answered with Redis's features during the fault (only one that started just before it may have).
P99_BOUND_S = 0.075


def request(i: int) -> PredictRequest:
    row = FeatureRow(features={"amount": 1.0}, entities={"store_id": f"s{i % STORES}"})
    return PredictRequest(request_id=f"r{i}", predictor="p", context={"consumer_id": f"c{i % CONSUMERS}"}, rows=[row])


def from_redis(shot: Shot) -> bool:
    return shot.response is not None and not shot.response.defaulted


async def load_features(url: str) -> None:
    store = build_store(FeatureSettings(backend="redis", url=url))
    consumers = [("consumer_id", f"c{i}", {"age": 20.0 + i, "emb": [0.1, 0.2]}) for i in range(CONSUMERS)]
    stores = [("store_id", f"s{i}", {"rating": 3.0 + i / 10}) for i in range(STORES)]
    try:
        await store.write_entities(consumers + stores)
    finally:
        await store.close()


SLOW: dict[str, Callable[[LatencyProxy], None]] = {
    "+50 ms": lambda proxy: proxy.delay(down_s=0.05),
    "+500 ms": lambda proxy: proxy.delay(down_s=0.5),
    "stall": lambda proxy: proxy.stall(),
}


# +500 ms takes the same path as +50 ms (the budget cuts both): behind --runslow to keep CI short.
@pytest.mark.parametrize("slow", [pytest.param(s, marks=pytest.mark.slow) if s == "+500 ms" else s for s in SLOW])
async def test_slow_redis_fails_no_call_and_keeps_fetches_within_the_budget(
    slow: str, fresh_redis: RedisServer, tmp_path: Path
) -> None:
    await load_features(fresh_redis.url)
    with LatencyProxy(fresh_redis.port) as proxy:
        env = {
            "SIBYL_FEATURES__BACKEND": "redis",
            "SIBYL_FEATURES__URL": f"redis://{proxy.address}/0",
            "SIBYL_FEATURES__CACHE_TTL_S": "0",  # every call asks Redis: the cache does not hide the fault
            "SIBYL_METRICS__PORT": "0",
        }
        proc, port, metrics_port = serve_subprocess(tmp_path, log_to=tmp_path / "server.log", **env)
        try:
            answering(port, 1)
            samples: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}

            async def slow_down(_: OpenLoad) -> None:
                samples["before"] = await asyncio.to_thread(scrape, metrics_port)
                SLOW[slow](proxy)

            async def fast_again(_: OpenLoad) -> None:
                samples["during"] = await asyncio.to_thread(scrape, metrics_port)
                proxy.reset()

            load = await run_fault(port, request, slow_down, fast_again, healthy=from_redis, fault_s=6.0)
        finally:
            code = await asyncio.to_thread(stop, proc)
    figures = Figures(f"redis {slow} 6 s", load, healthy=from_redis)
    buckets = histogram_delta(samples["before"], samples["during"], "sibyl_feature_fetch_seconds")
    p99_bound = quantile_bound(buckets, 0.99)
    print(f"\n{figures.row()}; feature fetch p99 during the fault <= {p99_bound * 1000:g} ms (server histogram)")
    assert code == 0, log_tail(tmp_path)
    assert not figures.failed, f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert buckets[float("inf")] >= len(figures.during) * 0.5, "the server fetched features for too few calls"
    assert p99_bound <= P99_BOUND_S, f"feature fetch p99 over {P99_BOUND_S * 1000:g} ms: {buckets}"
    assert sum(from_redis(s) for s in figures.during) <= 0.05 * len(figures.during), "calls waited for slow Redis"
    assert figures.recovery_s() is not None, "features never came back from Redis"
    logged = logged_ids_from_file([tmp_path / "predictions.jsonl"])
    assert load.answered() <= logged, f"{len(load.answered() - logged)} answered predictions missing from the log"
