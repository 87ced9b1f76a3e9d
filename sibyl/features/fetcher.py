"""What the service calls: in-process cache, then the store within a latency budget, behind a breaker.

Never raises for store trouble: a slow, failing or circuit-open store gives `degraded=True` and whatever the
cache had; the service fills the rest with defaults.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sibyl.features.base import EntityKey, FeatureStore, FeatureValue, FetchResult, Wanted
from sibyl.features.breaker import CircuitBreaker
from sibyl.features.cache import FeatureCache
from sibyl.models.manifest import FeatureSpec
from sibyl.observability.metrics import Metrics

log = logging.getLogger("sibyl.features")


class RateLimitedLog:
    """At most one warning per `every_s` for a kind of trouble; says how many were suppressed."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, message: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(kind, -self.every_s) < self.every_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        skipped = self._suppressed.pop(kind, 0)
        log.warning("%s%s", message, f" ({skipped} more since the last report)" if skipped else "")
        return True


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | OSError):
        return "connection"
    return "other"


class Fetcher:
    def __init__(
        self,
        store: FeatureStore,
        metrics: Metrics,
        budget_s: float,
        cache: FeatureCache | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.store, self.metrics, self.budget_s = store, metrics, budget_s
        self.cache = cache if cache is not None and cache.enabled else None
        self.breaker = breaker
        self.log = RateLimitedLog()
        self._background: set[asyncio.Future[dict[EntityKey, dict[str, FeatureValue]] | None]] = set()
        self._latency = metrics.feature_fetch_latency.labels(store.name)
        self._defer = metrics.deferred.observe
        self._hit, self._miss = metrics.feature_cache.labels("hit"), metrics.feature_cache.labels("miss")

    def on_decode_error(self, key: EntityKey, name: str, reason: str) -> None:
        """Passed to the store: an undecodable value is a missing one, counted and logged (rate-limited)."""
        self.metrics.feature_store_errors.labels("decode").inc()
        self.log.warn("decode", f"feature {name!r} of {key[0]}={key[1]} in {self.store.name} is unreadable: {reason}")

    async def fetch(self, wanted: Wanted, budget_s: float | None = None) -> FetchResult:
        start = time.perf_counter()
        result = FetchResult()
        todo = self._from_cache(wanted, result.values) if self.cache is not None else wanted
        if todo:
            if budget_s is None or budget_s >= self.budget_s:
                fetched = await self._from_store(todo)
            else:
                fetched = await self._within(todo, max(budget_s, 0.0))
            if fetched is None:
                result.degraded = True
            else:
                result.values.update(fetched)
                if self.cache is not None:
                    self._remember(todo, fetched)
        self._defer(self._latency, time.perf_counter() - start)  # applied off the request path (deferred)
        return result

    def _from_cache(self, wanted: Wanted, values: dict[EntityKey, dict[str, FeatureValue]]) -> Wanted:
        assert self.cache is not None
        todo: dict[EntityKey, Sequence[FeatureSpec]] = {}
        for key, specs in wanted.items():
            names = [s.name for s in specs]
            entry = self.cache.get(key, names)
            if entry is None:
                todo[key] = specs
                continue
            found = {n: v for n in names if (v := entry[n]) is not None}
            if found:
                values[key] = found
        hits = len(wanted) - len(todo)
        if hits:
            self._hit.inc(hits)
        if todo:
            self._miss.inc(len(todo))
        return todo

    def _remember(self, todo: Wanted, fetched: dict[EntityKey, dict[str, FeatureValue]]) -> None:
        assert self.cache is not None
        for key, specs in todo.items():
            got = fetched.get(key, {})
            self.cache.put(key, {s.name: got.get(s.name) for s in specs})

    async def _within(self, todo: Wanted, budget_s: float) -> dict[EntityKey, dict[str, FeatureValue]] | None:
        """A caller whose deadline leaves less than the configured budget: it waits its share, and the fetch goes
        on without it for the rest of the budget, so the breaker hears how the store really did. A short
        deadline is the caller's business; it must not open the circuit for everyone."""
        if self.breaker is not None and not self.breaker.allow():
            return None
        task = asyncio.ensure_future(self._from_store(todo, checked=True))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), budget_s)
        except TimeoutError:
            # The store may still answer within its budget: the task tells the breaker, and a late answer
            # fills the cache for the next caller.
            if self.cache is not None:
                task.add_done_callback(lambda done: self._remember_late(todo, done))
            return None

    def _remember_late(
        self, todo: Wanted, done: asyncio.Future[dict[EntityKey, dict[str, FeatureValue]] | None]
    ) -> None:
        fetched = None if done.cancelled() else done.result()
        if fetched is not None:
            self._remember(todo, fetched)

    async def _from_store(self, todo: Wanted, checked: bool = False) -> dict[EntityKey, dict[str, FeatureValue]] | None:
        """The store within the configured budget; every outcome is reported to the breaker."""
        breaker, budget_s = self.breaker, self.budget_s
        if breaker is not None and not checked and not breaker.allow():
            return None
        try:
            async with asyncio.timeout(budget_s):
                fetched = await self.store.fetch(todo)
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.abandon()
            raise
        except Exception as exc:  # the store is down, slow or confused: degrade, never fail the request
            kind = _error_kind(exc)
            self.metrics.feature_store_errors.labels(kind).inc()
            what = f"no answer within {budget_s * 1000:.1f} ms" if kind == "timeout" else f"{type(exc).__name__}: {exc}"
            self.log.warn(kind, f"feature store {self.store.name}: {what}; using defaults")
            if breaker is not None:
                breaker.failure()
            return None
        if breaker is not None:
            breaker.success()
        return fetched

    async def close(self) -> None:
        if self._background:  # fetches that outlived their callers end within the budget
            await asyncio.wait(set(self._background), timeout=self.budget_s + 1.0)
        await self.store.close()


class NullFetcher:
    """backend "none": every feature the request lacks takes its default."""

    async def fetch(self, wanted: Wanted, budget_s: float | None = None) -> FetchResult:
        return FetchResult()

    async def close(self) -> None:
        return None
