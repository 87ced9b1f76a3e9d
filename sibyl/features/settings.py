"""Feature-store settings (SIBYL_FEATURES__*): which backend, chosen by a short name, and its knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from sibyl.features.feast_redis import FeastSettings

EXAMPLE_FEATURES = Path(__file__).parent.parent / "examples" / "features.jsonl"


class FeatureSettings(BaseModel):
    backend: Literal["memory", "redis", "redis-cluster", "feast-redis", "none"] = Field(
        "memory", description="Where missing features come from."
    )
    url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (any node, for redis-cluster).")
    memory_file: str = Field(str(EXAMPLE_FEATURES), description="JSONL file that fills the memory backend.")
    prefix: str = Field("sibyl:v1", description="Key prefix; a new snapshot loads under a new prefix.")
    field_hash: Literal["xxh32", "xxh64", "name"] = Field("xxh32", description="How a field is named.")
    budget_ms: float = Field(20.0, gt=0, description="Longest a request waits for Redis before defaults.")
    cache_ttl_s: float = Field(30.0, ge=0, description="In-process cache TTL; 0 disables the cache.")
    cache_max_entries: int = Field(100_000, ge=0, description="Entities held in the in-process cache.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit.")
    breaker_reset_s: float = Field(2.0, gt=0, description="Seconds before a probe after the circuit opens.")
    feast: FeastSettings = Field(
        default_factory=FeastSettings, description="backend feast-redis: the Feast online store at `url` to read."
    )
