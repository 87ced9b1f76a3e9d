"""A bounded in-memory hand-off from the request path to a sink's background thread.

A deque, not queue.Queue: append/popleft are atomic under the GIL, so `offer` takes no lock and costs well
under a microsecond on the caller's thread. The bound is checked without a lock, so under concurrent
callers it may be exceeded by a few records; that is harmless.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

Item = TypeVar("Item")  # what a sink queues: a Record (Kafka), or its encoded line (the file sink)


class DropCounter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class RecordQueue(Generic[Item]):
    """Every sink's hand-off: `submit` on the request path, `drain` on the sink's thread, `close` once."""

    def __init__(self, maxsize: int, dropped: DropCounter) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.closed = False
        self._items: deque[Item] = deque()
        self._dropped = dropped

    def submit(self, record: Item) -> None:
        """A sink's submit: a record that comes after close() or finds the queue full is counted as dropped."""
        if self.closed or not self.offer(record):
            self._dropped.inc()

    def refuses(self, count: int = 1) -> bool:
        """Closed, or no room for `count` more: a caller can skip the work of making them (see FileSink.submit)."""
        return self.closed or len(self._items) + count > self.maxsize

    def drop(self) -> None:
        """Count one record as dropped without queuing it (the caller found the queue refusing)."""
        self._dropped.inc()

    def close(self) -> bool:
        """Refuse records from now on; False when it was closed already (the sink's close runs once)."""
        if self.closed:
            return False
        self.closed = True
        return True

    def offer(self, record: Item) -> bool:
        """Append unless full; False means the caller must spool or count the record as dropped."""
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(record)
        return True

    def offer_all(self, records: Sequence[Item]) -> bool:
        """All of them, or (closed, or not room for all) none: a caller that can retry is told, nothing is
        counted (outcomes: api/outcomes.py answers UNAVAILABLE)."""
        if self.closed or len(self._items) + len(records) > self.maxsize:
            return False
        self._items.extend(records)
        return True

    def drain(self, limit: int) -> list[Item]:
        """Up to `limit` records, oldest first."""
        out: list[Item] = []
        items = self._items
        for _ in range(min(limit, len(items))):
            out.append(items.popleft())
        return out

    @property
    def backlog(self) -> float:
        """The share of the bound in use: a paced thread stops waiting for idle gaps at half (sibyl.gil)."""
        return len(self._items) / self.maxsize

    def __len__(self) -> int:
        return len(self._items)
