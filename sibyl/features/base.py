"""The feature store interface the request path uses.

A request asks for the features of some entities: {(entity type, entity id): [FeatureSpec, ...]}. A store
answers with the values it has; whatever is absent falls back to the spec's default in the service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sibyl.models.manifest import FeatureSpec

EntityKey = tuple[str, str]  # (entity type, entity id), e.g. ("consumer_id", "42")
FeatureValue = float | np.ndarray  # scalar, or float32 array of the spec's dim
Wanted = Mapping[EntityKey, Sequence[FeatureSpec]]


@dataclass
class FetchResult:
    values: dict[EntityKey, dict[str, FeatureValue]] = field(default_factory=dict)
    degraded: bool = False  # the store was slow, down or circuit-open: some values may be defaults


class FeatureStore(Protocol):
    """A backend (memory, Redis, Redis Cluster). Raises on failure; the fetcher handles budgets."""

    name: str

    async def fetch(self, wanted: Wanted) -> dict[EntityKey, dict[str, FeatureValue]]: ...

    async def close(self) -> None: ...


class FeatureFetcher(Protocol):
    """What the service calls: cache + store + latency budget + circuit breaker. Never raises."""

    async def fetch(self, wanted: Wanted, budget_s: float | None = None) -> FetchResult: ...

    async def close(self) -> None: ...
