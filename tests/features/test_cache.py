from sibyl.features.breaker import CircuitBreaker
from sibyl.features.cache import ABSENT, FeatureCache
from sibyl.observability.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_hit_needs_every_name_and_remembers_absent_ones() -> None:
    clock = Clock()
    cache = FeatureCache(ttl_s=10, max_entries=10, clock=clock)
    key = ("consumer_id", "1")
    assert cache.get(key, ["a"]) is None
    cache.put(key, {"a": 1.0, "b": ABSENT})
    assert cache.get(key, ["a", "b"]) == {"a": 1.0, "b": None}
    assert cache.get(key, ["a", "c"]) is None  # c never fetched: a miss


def test_entries_expire_after_ttl_and_merges_keep_the_first_expiry() -> None:
    clock = Clock()
    cache = FeatureCache(ttl_s=10, max_entries=10, clock=clock)
    key = ("store_id", "9")
    cache.put(key, {"a": 1.0})
    clock.now += 6
    cache.put(key, {"c": 3.0})  # merged: must not make "a" live longer than its TTL
    assert cache.get(key, ["a", "c"]) == {"a": 1.0, "c": 3.0}
    clock.now += 4
    assert cache.get(key, ["a"]) is None
    assert len(cache) == 0


def test_size_is_bounded_least_recently_used_first() -> None:
    cache = FeatureCache(ttl_s=10, max_entries=2, clock=Clock())
    cache.put(("e", "1"), {"a": 1.0})
    cache.put(("e", "2"), {"a": 2.0})
    assert cache.get(("e", "1"), ["a"]) is not None  # 1 is now the most recent
    cache.put(("e", "3"), {"a": 3.0})
    assert len(cache) == 2
    assert cache.get(("e", "2"), ["a"]) is None
    assert cache.get(("e", "1"), ["a"]) == {"a": 1.0}


def test_zero_ttl_or_size_disables() -> None:
    assert not FeatureCache(0, 10).enabled
    assert not FeatureCache(5, 0).enabled
    assert FeatureCache(5, 10).enabled


def test_breaker_opens_after_n_failures_and_lets_one_probe_through_after_reset() -> None:
    clock = Clock()
    metrics = Metrics()
    breaker = CircuitBreaker(failures=3, reset_s=2.0, gauge=metrics.feature_circuit_open, clock=clock)

    def is_open() -> bool:  # what operators see: sibyl_feature_circuit_open
        return metrics.registry.get_sample_value("sibyl_feature_circuit_open") == 1

    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert not is_open()
    breaker.success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert is_open() and not breaker.allow()
    clock.now += 2.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.failure()  # probe failed: open again for another reset_s
    assert not breaker.allow()
    clock.now += 2.0
    assert breaker.allow()
    breaker.success()
    assert not is_open() and breaker.allow()


def test_abandoned_probe_lets_the_next_caller_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_s=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()
