"""In-process TTL cache of decoded features, one entry per entity, LRU-bounded.

An entry remembers absent features too (ABSENT), so an entity missing from Redis does not cost a round trip
on every request. An entry never outlives its TTL: values merged into it later keep its expiry.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from sibyl.features.base import EntityKey, FeatureValue

ABSENT = None  # cached "Redis has no value for this feature"
CachedValues = dict[str, FeatureValue | None]


class FeatureCache:
    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_entries, self._clock = ttl_s, max_entries, clock
        self._entries: OrderedDict[EntityKey, tuple[float, CachedValues]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: EntityKey, names: Iterable[str]) -> CachedValues | None:
        """The entry if it is fresh and knows every name asked for (value or ABSENT), else None."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, values = hit
        if expires <= self._clock():
            del self._entries[key]
            return None
        for name in names:
            if name not in values:
                return None
        self._entries.move_to_end(key)
        return values

    def put(self, key: EntityKey, values: CachedValues) -> None:
        now = self._clock()
        old = self._entries.get(key)
        if old is not None and old[0] > now:
            self._entries[key] = (old[0], {**old[1], **values})
        else:
            self._entries[key] = (now + self.ttl_s, values)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
