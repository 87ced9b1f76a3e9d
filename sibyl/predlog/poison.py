"""Records the broker refuses (too large, invalid): trimmed and sent again, or quarantined to a dead-letter file.

Trim: feature values and row entities dropped, `trimmed` set; ids, scores and context kept (a 10,000-row x
50-feature record is ~2 MB, its scores ~40 KB). A record that is refused again, or has nothing to trim, goes to
`spool_dir/dead-letter/dead-letter.jsonl`: one JSON object a line, {"reason": ..., "record": <the record as
`sibyl predlog tail` prints it>}. Neither ever blocks the records behind it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from sibyl.predlog.jsonl import to_json_line
from sibyl.v1.predlog_pb2 import PredictionLog

log = logging.getLogger(__name__)
DEAD_LETTER_DIR = "dead-letter"
DEAD_LETTER_FILE = "dead-letter.jsonl"


def trimmed(value: bytes) -> bytes | None:
    """The record without its feature values, marked trimmed; None if there is nothing left to drop."""
    record = PredictionLog.FromString(value)
    if record.trimmed or not (record.feature_values or record.row_entities):
        return None
    record.ClearField("feature_values")
    record.ClearField("row_entities")
    record.trimmed = True
    return record.SerializeToString()


def dead_letter_json(value: bytes) -> str:
    """A refused prediction log value as `sibyl predlog tail` prints it (raises on bytes that are no record)."""
    return to_json_line(PredictionLog.FromString(value))


class DeadLetters:
    """Appends quarantined records as JSON lines (fsynced: dead letters are rare and must not be lost)."""

    def __init__(self, spool_dir: Path, render: Callable[[bytes], str] = dead_letter_json) -> None:
        self.path = spool_dir / DEAD_LETTER_DIR / DEAD_LETTER_FILE
        self._render = render  # the record's stream says how (predlog/stream.py)
        self._lock = threading.Lock()

    def write(self, value: bytes, reason: str) -> bool:
        """False if it could not be written (the caller counts it dropped)."""
        try:
            line = self._render(value)
        except Exception as exc:  # not even a record of its stream: keep the bytes' size in the reason
            line, reason = "null", f"{reason}; unreadable record of {len(value)} bytes: {exc}"
        text = f'{{"reason":{json.dumps(reason)},"record":{line}}}\n'.encode()
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("ab") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            log.error("prediction log: dead-letter write to %s failed: %s", self.path, exc)
            return False
        log.warning("prediction log: a record the broker refused (%s) is quarantined in %s", reason, self.path)
        return True
