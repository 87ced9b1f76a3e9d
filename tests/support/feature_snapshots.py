"""What a feature snapshot written to Redis is compared by: the bundled example's features as the flat records a
batch engine holds, and every key a writer left under a prefix."""

from __future__ import annotations

import json
from typing import Any

import redis

from sibyl.config import EXAMPLE_FEATURES


def example_records(entity: str) -> list[dict[str, Any]]:
    """features.jsonl as flat records (id + features), as a Spark DataFrame of it would give them."""
    rows = [json.loads(line) for line in EXAMPLE_FEATURES.read_text().splitlines() if line.strip()]
    return [{"id": r["id"], **r["features"]} for r in rows if r["entity"] == entity]


def dump(client: redis.Redis, prefix: str) -> dict[str, tuple[dict[bytes, bytes], bool]]:
    """Every key under prefix (prefix cut off) -> (its hash, whether it expires)."""
    return {
        key.decode().removeprefix(prefix): (client.hgetall(key), client.pttl(key) > 0)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000)
    }
