"""Bulk loader: rows from a file into Redis in pipelined chunks, with progress and honest failure reports.

On a bad row, the rows before it are written (so a re-run after the fix only has to redo the rest; HSET
overwrites, so re-running the whole file is safe too) and the error names the line and how many rows are in.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TextIO

from sibyl.errors import InvalidArgument, Unavailable
from sibyl.features.codec import Dtype, EncodeError, check_collisions
from sibyl.features.redis import RedisFeatureStore
from sibyl.features.sources import BadInput, Numbered
from sibyl.models.manifest import FeatureSpec


@dataclass
class LoadReport:
    rows: int = 0
    last: str = ""  # where the last written row came from, e.g. "line 1001"
    seconds: float = 0.0
    dry_run: bool = False


class Progress:
    """A line on stderr at most every `every_s` seconds."""

    def __init__(self, out: TextIO = sys.stderr, every_s: float = 1.0) -> None:
        self.out, self.every_s, self.start = out, every_s, time.monotonic()
        self._next = self.start + every_s

    def __call__(self, report: LoadReport) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        rate = report.rows / max(now - self.start, 1e-9)
        print(f"loading: {report.rows} rows, up to {report.last} ({rate:,.0f} rows/s)", file=self.out, flush=True)


def _written_so_far(report: LoadReport) -> str:
    if report.dry_run:
        return f"dry run: {report.rows} rows before it are fine, nothing was written"
    if not report.rows:
        return "nothing was written"
    return f"{report.rows} rows before it were written (up to {report.last}); nothing after"


async def load(
    store: RedisFeatureStore,
    rows: Iterable[Numbered],
    specs: Mapping[str, FeatureSpec | Dtype] | None = None,
    ttl_s: float | None = None,
    chunk_rows: int = 1000,
    progress: Callable[[LoadReport], None] | None = None,
    dry_run: bool = False,
) -> LoadReport:
    report = LoadReport(dry_run=dry_run)
    start = time.monotonic()
    chunk: list[Numbered] = []
    checked: set[str] = set()

    async def flush() -> None:
        if not chunk:
            return
        batch = [row for _, row in chunk]
        try:
            if dry_run:
                store.encode_rows(batch, specs)
            else:
                await store.write_entities(batch, specs, ttl_s)
        except EncodeError as exc:  # nothing of this chunk was sent: write the rows before the bad one
            good = chunk[: exc.index or 0]
            if good and not dry_run:
                await store.write_entities([row for _, row in good], specs, ttl_s)
            _advance(report, good)
            raise InvalidArgument(f"{chunk[exc.index or 0][0]}: {exc}; {_written_so_far(report)}") from None
        except Exception as exc:  # redis-py errors (connection, timeout, cluster): the chunk's fate is unknown
            raise Unavailable(
                f"redis failed writing the chunk that starts at {chunk[0][0]} ({exc}); {_written_so_far(report)} "
                f"except that this chunk may be partly written; re-run once redis is back (HSET is idempotent)"
            ) from None
        _advance(report, chunk)
        chunk.clear()
        if progress:
            progress(report)

    try:
        for where, row in rows:
            new = row[2].keys() - checked
            if new:
                checked |= new
                check_collisions(sorted(checked), store.field_hash)
            chunk.append((where, row))
            if len(chunk) >= chunk_rows:
                await flush()
    except (BadInput, EncodeError) as exc:  # a row that cannot be read: write what came before it, then say so
        await flush()
        raise InvalidArgument(f"{exc}; {_written_so_far(report)}") from None
    await flush()
    report.seconds = time.monotonic() - start
    return report


def _advance(report: LoadReport, written: list[Numbered]) -> None:
    if written:
        report.rows += len(written)
        report.last = written[-1][0]
