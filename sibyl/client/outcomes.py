"""Outcomes for Client.report_outcomes: row dicts or columns into ReportOutcomesRequest messages, in calls of at
most `per_call` outcomes (the server refuses more than its predlog.outcomes_max_per_call, 10,000 by default).

    client.report_outcomes([{"prediction_id": pid, "row": 0, "value": 1.0}])
    client.report_outcomes(prediction_ids=ids, rows=rows, values=labels, observed_at=times, weights=w)

observed_at: a timezone-aware datetime, an integer of Unix nanoseconds, a numpy datetime64 (taken as UTC), or
None (the server stamps the time it receives the outcome); one value for every outcome, or one per outcome.
The server checks the rest (docs/monitoring.md#outcomes-schema-and-ways-in); a bad outcome refuses its call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.v1.outcome_pb2 import Outcome, ReportOutcomesRequest

PER_CALL = 10_000  # the server's default predlog.outcomes_max_per_call
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIELDS = frozenset({"prediction_id", "row", "value", "observed_at", "weight"})


class OutcomeColumns(TypedDict, total=False):
    """report_outcomes' keyword arguments besides row dicts: the columns (equal lengths) and the call size."""

    prediction_ids: Sequence[str]
    rows: Any  # Sequence[int] or an integer array; default 0 for all
    values: Any  # Sequence[float] or an array
    observed_at: Any  # one moment for all, or one per outcome (see the module docstring)
    weights: Any  # Sequence[float] or an array; default none
    per_call: int  # outcomes per Report call (default PER_CALL)


def requests(outcomes: Iterable[Mapping[str, Any]] | None, columns: OutcomeColumns) -> Iterator[ReportOutcomesRequest]:
    """The calls to make, in order."""
    per_call = columns.get("per_call", PER_CALL)
    if per_call < 1:
        raise InvalidArgument(f"per_call must be 1 or more, got {per_call}")
    if outcomes is not None:
        items = _from_rows(outcomes)
    else:
        c = columns
        items = _from_columns(
            c.get("prediction_ids"), c.get("rows"), c.get("values"), c.get("observed_at"), c.get("weights")
        )
    batch: list[Outcome] = []
    for outcome in items:
        batch.append(outcome)
        if len(batch) == per_call:
            yield ReportOutcomesRequest(outcomes=batch)
            batch = []
    if batch:
        yield ReportOutcomesRequest(outcomes=batch)


def _from_rows(outcomes: Iterable[Mapping[str, Any]]) -> Iterator[Outcome]:
    for index, item in enumerate(outcomes):
        unknown = set(item) - FIELDS
        if unknown:
            raise InvalidArgument(
                f"outcomes[{index}]: unknown field {sorted(unknown)[0]!r}; the fields are {sorted(FIELDS)}"
            )
        yield _outcome(
            item["prediction_id"], item.get("row", 0), item["value"], item.get("observed_at"), item.get("weight")
        )


def _from_columns(
    prediction_ids: Sequence[str] | None, rows: Any, values: Any, observed_at: Any, weights: Any
) -> Iterator[Outcome]:
    if prediction_ids is None or values is None:
        raise InvalidArgument("give outcomes as row dicts, or as columns: prediction_ids and values (rows, weights)")
    n = len(prediction_ids)
    columns = {"values": values, "rows": rows, "weights": weights}
    if not _scalar_time(observed_at):
        columns["observed_at"] = observed_at
    for name, column in columns.items():
        if column is not None and len(column) != n:
            raise InvalidArgument(f"{name} has {len(column)} items for {n} prediction_ids")
    for i in range(n):
        yield _outcome(
            prediction_ids[i],
            0 if rows is None else rows[i],
            values[i],
            observed_at if _scalar_time(observed_at) else observed_at[i],
            None if weights is None else weights[i],
        )


def _scalar_time(value: Any) -> bool:
    return value is None or isinstance(value, datetime | int | np.integer | np.datetime64)


def _outcome(prediction_id: Any, row: Any, value: Any, observed_at: Any, weight: Any) -> Outcome:
    outcome = Outcome(prediction_id=str(prediction_id), row=int(row), value=float(value))
    if weight is not None:
        outcome.weight = float(weight)
    if observed_at is not None:
        outcome.observed_at_unix_nanos = unix_nanos(observed_at)
    return outcome


def unix_nanos(moment: Any) -> int:
    if isinstance(moment, np.datetime64):
        return int(moment.astype("datetime64[ns]").astype(np.int64))
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise InvalidArgument(f"observed_at {moment} has no timezone: give an aware datetime (e.g. UTC)")
        delta = moment - EPOCH  # exact (timedelta), where timestamp() goes through a float
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    if isinstance(moment, int | np.integer):
        return int(moment)
    raise InvalidArgument(f"observed_at {moment!r}: give a timezone-aware datetime or Unix nanoseconds (int)")
