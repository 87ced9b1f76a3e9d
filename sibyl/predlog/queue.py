"""A bounded in-memory hand-off from the request path to a sink's background thread.

A deque, not queue.Queue: append/popleft are atomic under the GIL, so `offer` takes no lock and costs well
under a microsecond on the caller's thread. The bound is checked without a lock, so under concurrent
callers it may be exceeded by a few records; that is harmless.
"""

from __future__ import annotations

from collections import deque

from sibyl.v1.predlog_pb2 import PredictionLog


class RecordQueue:
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[PredictionLog] = deque()

    def offer(self, record: PredictionLog) -> bool:
        """Append unless full; False means the caller must spool or count the record as dropped."""
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(record)
        return True

    def drain(self, limit: int) -> list[PredictionLog]:
        """Up to `limit` records, oldest first."""
        out: list[PredictionLog] = []
        items = self._items
        for _ in range(min(limit, len(items))):
            out.append(items.popleft())
        return out

    def __len__(self) -> int:
        return len(self._items)
