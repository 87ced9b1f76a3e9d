"""The prediction log sink interface: the request path hands records over and never waits."""

from __future__ import annotations

from typing import Protocol

from sibyl.v1.predlog_pb2 import PredictionLog


class PredictionSink(Protocol):
    def start(self) -> None:
        """Start background delivery (threads); returns at once."""

    def submit(self, record: PredictionLog) -> None:
        """Queue one record. Never blocks, never raises; overflow is spooled or counted as dropped."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (to the destination, or the spool) and stop. Idempotent."""
