"""Load the example feature snapshot into Redis in sibyl's layout (sibyl.features.codec), one pipeline."""

from __future__ import annotations

from benchmarks.load.workload import feature_records
from sibyl.features.codec import encode, entity_key, field_name


def load_features(url: str, prefix: str = "sibyl:v1", field_hash: str = "xxh32") -> int:
    """Write every entity of sibyl/examples/features.jsonl as one hash; returns the number of entities."""
    import redis

    records = feature_records()
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    try:
        pipe = client.pipeline(transaction=False)
        for rec in records:
            features = rec["features"]
            assert isinstance(features, dict)
            mapping = {field_name(name, field_hash): encode(value) for name, value in features.items()}  # type: ignore[arg-type]
            pipe.hset(entity_key(prefix, str(rec["entity"]), str(rec["id"])), mapping=mapping)  # type: ignore[arg-type]
        pipe.execute()
    finally:
        client.close()
    return len(records)
