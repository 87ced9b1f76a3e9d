"""Embedded feature store: every entity in a dict, filled from a JSONL file. The default without Redis.

One line per entity: {"entity": "consumer_id", "id": "42", "features": {"name": 1.5, "emb": [0.1, 0.2]}}
Values are kept as JSON and decoded per spec on each fetch, with the same rules as the Redis codec.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sibyl.errors import ConfigError
from sibyl.features.base import EntityKey, FeatureValue, Wanted
from sibyl.features.codec import DecodeError, decode_json
from sibyl.features.redis import OnDecodeError, Row, _ignore


def _parse_line(line: str) -> tuple[str, str, dict[str, Any]]:
    item = json.loads(line)
    if not isinstance(item, dict) or not isinstance(item.get("features"), dict):
        raise ValueError('expected {"entity": ..., "id": ..., "features": {...}}')
    entity, entity_id = item.get("entity"), item.get("id")
    if not isinstance(entity, str) or not entity or entity_id is None or isinstance(entity_id, dict | list):
        raise ValueError('"entity" must be a non-empty string and "id" a string or number')
    return entity, str(entity_id), item["features"]


def read_jsonl(path: str | Path) -> Iterable[tuple[int, Row]]:
    """(line number, row) for each non-blank line; ValueError says which line is wrong."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, _parse_line(line)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                raise ValueError(f"{path} line {number}: {exc}") from None


class MemoryFeatureStore:
    name = "memory"

    def __init__(self, on_decode_error: OnDecodeError = _ignore) -> None:
        self.entities: dict[EntityKey, dict[str, Any]] = {}
        self.on_decode_error = on_decode_error

    @classmethod
    def from_jsonl(cls, path: str | Path, on_decode_error: OnDecodeError = _ignore) -> MemoryFeatureStore:
        store = cls(on_decode_error)
        try:
            store.put(row for _, row in read_jsonl(path))
        except FileNotFoundError:
            raise ConfigError(
                f"features.memory_file {path} does not exist (SIBYL_FEATURES__MEMORY_FILE); "
                "point it at a JSONL file or set SIBYL_FEATURES__BACKEND=none"
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"features.memory_file: {exc}") from None
        return store

    def put(self, rows: Iterable[Row]) -> int:
        count = 0
        for entity, entity_id, features in rows:
            self.entities.setdefault((entity, str(entity_id)), {}).update(features)
            count += 1
        return count

    async def write_entities(
        self, rows: Iterable[Row], specs: Mapping[str, Any] | None = None, ttl_s: float | None = None
    ) -> int:
        return self.put(rows)

    async def fetch(self, wanted: Wanted) -> dict[EntityKey, dict[str, FeatureValue]]:
        return self.read(wanted)

    def read(self, wanted: Wanted) -> dict[EntityKey, dict[str, FeatureValue]]:
        """The same answer as fetch, blocking-free and loop-free (the batch scorer's reader)."""
        out: dict[EntityKey, dict[str, FeatureValue]] = {}
        for key, specs in wanted.items():
            stored = self.entities.get(key)
            if stored is None:
                continue
            values: dict[str, FeatureValue] = {}
            for spec in specs:
                raw = stored.get(spec.name)
                if raw is None:
                    continue
                try:
                    values[spec.name] = decode_json(spec, raw)
                except DecodeError as exc:
                    self.on_decode_error(key, spec.name, str(exc))
            if values:
                out[key] = values
        return out

    async def close(self) -> None:
        return None
