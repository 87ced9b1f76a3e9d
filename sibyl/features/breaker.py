"""Circuit breaker: after N consecutive failures stop calling the store; after reset_s let one probe through.

closed --N failures--> open --reset_s--> half-open (one caller probes) --ok--> closed / --fail--> open
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Gauge


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        reset_s: float,
        gauge: Gauge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures, self.reset_s, self._gauge, self._clock = failures, reset_s, gauge, clock
        self._count = 0
        self._opened_at: float | None = None
        self._probing = False

    def allow(self) -> bool:
        """True when a call may go to the store (closed, or this caller is the half-open probe)."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.reset_s:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._count, self._probing = 0, False
        if self._opened_at is not None:
            self._opened_at = None
            self._set_gauge(0)

    def failure(self) -> None:
        self._count += 1
        if self._probing or self._count >= self.failures:
            self._probing = False
            if self._opened_at is None:
                self._set_gauge(1)
            self._opened_at = self._clock()

    def abandon(self) -> None:
        """The probe was cancelled before it could tell: let the next caller probe."""
        self._probing = False

    def _set_gauge(self, value: int) -> None:
        if self._gauge is not None:
            self._gauge.set(value)
