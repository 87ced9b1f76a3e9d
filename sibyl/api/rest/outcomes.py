"""POST /v1/outcomes: a JSON body into sibyl.v1.Outcome messages for api.outcomes.OutcomeIntake.

    {"outcomes": [{"prediction_id": "<32 hex>", "row": 0, "value": 1.0,
                   "observed_at": "2026-12-06T10:00:00.5Z" | 1796551200500000000, "weight": 1.0}, ...]}

row defaults to 0, observed_at to the time the server receives it, weight to none (1 in metrics). observed_at is an
RFC 3339 string with a UTC offset (nanoseconds kept) or an integer of Unix nanoseconds. An unknown key is refused
(a misspelt "weigth" must not pass as no weight). Errors name the item and field as the gRPC call's do. The body
is within server.max_message_bytes (the app's limit) and parsed once; the item count is checked before any item.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from sibyl.api.outcomes import MAX_ROW, OutcomeIntake
from sibyl.errors import InvalidArgument
from sibyl.v1.outcome_pb2 import Outcome

KEYS = frozenset({"prediction_id", "row", "value", "observed_at", "weight"})
RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")


def parse(body: bytes, intake: OutcomeIntake) -> list[Outcome]:
    """The body's outcomes, checked (intake.check), or InvalidArgument (counted as rejected)."""
    items = _items(body, intake)
    intake.too_many(len(items))
    try:
        outcomes = [_outcome(item, index) for index, item in enumerate(items)]
    except InvalidArgument:
        intake.count_rejected(len(items))
        raise
    intake.check(outcomes)
    return outcomes


def _items(body: bytes, intake: OutcomeIntake) -> list[Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        intake.count_rejected(0)
        raise InvalidArgument(f"the body is not JSON: {exc}") from None
    items = doc.get("outcomes") if isinstance(doc, dict) and set(doc) == {"outcomes"} else None
    if not isinstance(items, list):
        intake.count_rejected(0)
        raise InvalidArgument('the body must be {"outcomes": [...]}: a JSON object with a list of outcomes')
    return items


def reply(accepted: int) -> bytes:
    return orjson.dumps({"accepted": accepted})


def _outcome(item: Any, index: int) -> Outcome:
    where = f"outcomes[{index}]"
    if not isinstance(item, dict):
        raise InvalidArgument(f"{where}: an outcome is a JSON object, not {type(item).__name__}")
    unknown = set(item) - KEYS
    if unknown:
        raise InvalidArgument(f"{where}: unknown field {sorted(unknown)[0][:40]!r}; the fields are {sorted(KEYS)}")
    pid = item.get("prediction_id")
    if not isinstance(pid, str):
        raise InvalidArgument(f"{where}.prediction_id: a string is required")
    row = item.get("row", 0)
    if type(row) is not int or not 0 <= row <= MAX_ROW:
        raise InvalidArgument(f"{where}.row: {str(row)[:40]} is not a row index (an integer from 0)")
    outcome = Outcome(prediction_id=pid, row=row, value=_number(item.get("value"), f"{where}.value"))
    if item.get("weight") is not None:
        outcome.weight = _number(item["weight"], f"{where}.weight")
    if item.get("observed_at") is not None:
        outcome.observed_at_unix_nanos = _instant(item["observed_at"], f"{where}.observed_at")
    return outcome


def _number(value: Any, where: str) -> float:
    """A JSON number (orjson reads NaN and Infinity as not JSON at all; the intake checks the range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{where}: a number is required, not {str(value)[:40]!r}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond a double
        raise InvalidArgument(f"{where}: {str(value)[:40]} is not a finite number") from None


def _instant(value: Any, where: str) -> int:
    """Unix nanoseconds from an RFC 3339 string or an integer of nanoseconds (the intake checks the range)."""
    if type(value) is int:
        if not 0 < value < 2**63:
            raise InvalidArgument(f"{where}: {str(value)[:40]} is not Unix time in nanoseconds")
        return value
    found = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidArgument(
            f"{where}: {str(value)[:40]!r} is neither an RFC 3339 time with a UTC offset "
            "(2026-12-06T10:00:00.5Z) nor an integer of Unix nanoseconds"
        )
    seconds, fraction, offset = found.groups()
    try:
        moment = datetime.fromisoformat(f"{seconds}{'+00:00' if offset in 'Zz' else offset}")
    except ValueError as exc:  # 2026-02-30, 25:00:00
        raise InvalidArgument(f"{where}: {value[:40]!r} is not a valid time: {exc}") from None
    nanos = int((fraction or "").ljust(9, "0"))
    return int(moment.timestamp()) * 10**9 + nanos
