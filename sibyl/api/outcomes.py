"""Outcomes in, whatever the transport: checked, stamped and handed to the outcome log (predlog/outcome_sink.py).

The gRPC servicer (outcome_servicer) and POST /v1/outcomes (rest/outcomes) parse their bodies into sibyl.v1.Outcome
messages and call `OutcomeIntake.report`; both are admitted like a Predict call first (draining, max_in_flight),
and a large body is parsed and checked off the event loop (PredictionService.off_loop).

A call is all or nothing: one bad outcome refuses it with INVALID_ARGUMENT (HTTP 400) naming the item and field,
and nothing of it is kept, so the caller can fix it and send the whole call again without duplicates. Outcomes
are refused, never dropped in silence, when there is no outcome log (predlog.sink = none: FAILED_PRECONDITION,
HTTP 409, since retrying cannot help) or when it cannot take them all now (its queue full, or closing:
UNAVAILABLE, HTTP 503, retry with backoff). sibyl_outcomes_total{outcome} counts each outcome: accepted,
rejected (a call refused as invalid: its outcomes; 1 for a body that is not even a list of outcomes), refused.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence

from sibyl.errors import FailedPrecondition, InvalidArgument, Unavailable
from sibyl.observability.metrics import Metrics
from sibyl.predlog.outcome_sink import OutcomeSink
from sibyl.v1.outcome_pb2 import Outcome

PREDICTION_ID = re.compile(r"[0-9a-f]{32}")  # serving/service.py: new_prediction_id()
EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z: anything earlier is a unit or epoch mistake
FUTURE_SLACK_NS = 24 * 3600 * 10**9  # clocks disagree; an outcome a day ahead of ours is a mistake
MAX_ROW = 2**32 - 1  # Outcome.row is a uint32


class NoOutcomeLog(FailedPrecondition):
    http_status = 409  # the server's state, not the request, is what is wrong; retrying cannot help


class OutcomeIntake:
    def __init__(
        self,
        sink: OutcomeSink | None,
        metrics: Metrics,
        max_per_call: int,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.sink, self.max_per_call, self._clock_ns = sink, max_per_call, clock_ns
        counted = metrics.outcomes
        self._accepted, self._rejected, self._refused = (counted.labels(o) for o in ("accepted", "rejected", "refused"))
        for outcome in ("written", "sent", "spooled", "dropped"):  # every series from 0 (increase() sees the first)
            counted.labels(outcome)

    def start(self) -> None:
        if self.sink is not None:
            self.sink.start()

    def close(self, timeout_s: float) -> None:
        """Flush what is queued to the file or topic (or the spool) and stop; reports after it are refused."""
        if self.sink is not None:
            self.sink.close(timeout_s)

    def count_rejected(self, outcomes: int) -> None:
        """A body refused before it became a list of outcomes (transports call it): at least 1."""
        self._rejected.inc(max(1, outcomes))

    def too_many(self, count: int) -> None:
        """Refuse a call over max_per_call before any of it is read further."""
        if count > self.max_per_call:
            self.count_rejected(count)
            raise InvalidArgument(
                f"outcomes: {count} in one call, over the limit of {self.max_per_call} "
                "(predlog.outcomes_max_per_call); send them in several calls"
            )

    def check(self, outcomes: Sequence[Outcome]) -> None:
        """Every outcome valid, or InvalidArgument naming the first bad one; fills observed_at where it is 0.
        Thread-safe (no state): the transports run it off the loop for a large call."""
        self.too_many(len(outcomes))
        now = self._clock_ns()
        try:
            for index, outcome in enumerate(outcomes):
                _check(outcome, index, now)
        except InvalidArgument:
            self.count_rejected(len(outcomes))
            raise

    def report(self, outcomes: Sequence[Outcome]) -> int:
        """Hand checked outcomes to the outcome log, all or none; how many were accepted."""
        if self.sink is None:
            self._refused.inc(len(outcomes))
            raise NoOutcomeLog(
                "outcomes are not kept on this server: predlog.sink is none; set it to file or kafka "
                "(docs/monitoring.md#outcomes-schema-and-ways-in)"
            )
        if outcomes and not self.sink.submit_all(outcomes):
            self._refused.inc(len(outcomes))
            raise Unavailable("the outcome log cannot take more now (its queue is full, or it is closing); retry")
        self._accepted.inc(len(outcomes))
        return len(outcomes)


def _check(outcome: Outcome, index: int, now_ns: int) -> None:
    where = f"outcomes[{index}]"
    pid = outcome.prediction_id
    if not PREDICTION_ID.fullmatch(pid):
        raise InvalidArgument(
            f"{where}.prediction_id: {pid[:40]!r} is not a prediction id (32 lowercase hex characters, "
            "as PredictResponse.prediction_id)"
        )
    if not math.isfinite(outcome.value):
        raise InvalidArgument(f"{where}.value: {outcome.value} is not a finite number")
    if outcome.HasField("weight") and not (math.isfinite(outcome.weight) and outcome.weight >= 0):
        raise InvalidArgument(f"{where}.weight: {outcome.weight} is not a finite number >= 0")
    at = outcome.observed_at_unix_nanos
    if at == 0:
        outcome.observed_at_unix_nanos = now_ns
    elif not EARLIEST_NS <= at <= now_ns + FUTURE_SLACK_NS:
        raise InvalidArgument(
            f"{where}.observed_at: {at} ns is not between 2000-01-01 and a day from now (Unix time in nanoseconds, UTC)"
        )
