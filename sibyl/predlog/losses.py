"""Why a prediction log record was not kept, and counting it: the total stays
sibyl_predlog_records_total{outcome="dropped"}; sibyl_predlog_dropped_total{reason} says why for what the sinks
lose (the total also holds answered calls whose records the after-response lane refused before any sink saw
them: serving/after_response.py).

Reasons: queue (the in-memory hand-off was full, or the sink already closed), spool_full (the spool reached
spool_max_bytes), disk_full (the kernel said ENOSPC, EDQUOT or EFBIG: no room on the volume, the quota or the
file size limit), write_error (any other failed write), poison (a record the broker refused that could not be
quarantined either). docs/reliability.md#full-disk says what each means for an operator. Outcomes
(predlog/outcome_sink.py) are counted the same way in their own series: sibyl_outcomes_total{outcome="dropped"}
and sibyl_outcomes_dropped_total{reason}.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Literal, get_args

from sibyl.predlog.stream import SinkCounters

Reason = Literal["queue", "spool_full", "disk_full", "write_error", "poison"]
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def reason_of(exc: OSError) -> Reason:
    return "disk_full" if exc.errno in _NO_ROOM else "write_error"


class Losses:
    """One sink's count of records not kept; `log` says so at most once per `every_s` (a full disk fails every
    batch: one line per batch would flood the log)."""

    def __init__(self, counters: SinkCounters, logger: logging.Logger, every_s: float = 10.0) -> None:
        self._total = counters.records.labels("dropped")
        self._by_reason = counters.dropped
        for reason in get_args(Reason):  # every series from 0: a counter born at 1 hides its first loss from increase()
            self._by_reason.labels(reason)
        self._log, self._every_s = logger, every_s
        self._last_log = -every_s
        self._since_log = 0

    def count(self, records: int, reason: Reason) -> None:
        if records > 0:
            self._total.inc(records)
            self._by_reason.labels(reason).inc(records)

    def log(self, records: int, message: str) -> None:
        """An error line for `records` lost, unless one was written within every_s (then it says how many since)."""
        self._since_log += records
        now = time.monotonic()
        if now - self._last_log >= self._every_s:
            self._log.error("%s; %d records dropped since the last such report", message, self._since_log)
            self._last_log, self._since_log = now, 0

    def counter(self, reason: Reason) -> ReasonCounter:
        """What RecordQueue counts its refusals with."""
        return ReasonCounter(self, reason)


class ReasonCounter:
    def __init__(self, losses: Losses, reason: Reason) -> None:
        self._losses, self._reason = losses, reason

    def inc(self, amount: float = 1) -> None:
        self._losses.count(int(amount), self._reason)
