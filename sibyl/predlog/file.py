"""The default sink: JSON lines appended to a file by a background thread, in batches.

`submit` encodes the record (orjson) on the caller's thread, the one that built it (the event loop for a small
call's follow-up, else the records lane), and appends the line to a bounded in-memory queue; the writer thread
only writes. When the writer encoded, it held the GIL for a batch of ~50 ms of lines at a time, and a call that
arrived meanwhile waited for it (docs/performance.md#follow-ups-on-the-loop). Each batch goes to the OS in writev(2)
calls of its lines as orjson made them (so `tail -f` sees it), without joining them first: the join copied the
whole batch again (docs/performance.md#file-log-writing).
close() drains the queue and fsyncs.

Rotation: with max_bytes, a file that reached it is renamed PATH.1 (PATH.1 -> PATH.2 ..., `backups` kept) and
a new PATH is started. External rotation (logrotate's move, then SIGHUP): the writer reopens PATH on SIGHUP,
and also whenever PATH no longer names the file it holds open (checked before each batch), so records never
keep going into a moved or deleted file.

A failed write (a full disk: docs/reliability.md#full-disk) never leaves part of a record behind: the file is cut
back to the end of the last whole chunk written, the records after it are counted as dropped by reason
(predlog/losses.py), and the next batch tries again, so logging resumes by itself once there is room.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from sibyl.gil import enroll, pace
from sibyl.observability.metrics import Metrics
from sibyl.predlog.losses import Losses, reason_of
from sibyl.predlog.queue import RecordQueue
from sibyl.predlog.stream import PREDICTIONS, Record, Stream

log = logging.getLogger(__name__)

_IOV_MAX = os.sysconf("SC_IOV_MAX")  # buffers one writev(2) takes
_CHUNK_BYTES = 64 * 1024  # encoded bytes between two writes (see FileSink._write_records)


class FileSink:
    def __init__(
        self,
        path: str | Path,
        metrics: Metrics,
        queue_size: int = 100_000,
        batch_max: int = 2_000,
        poll_s: float = 0.05,
        max_bytes: int = 0,
        backups: int = 5,
        stream: Stream = PREDICTIONS,
    ) -> None:
        self.path = Path(path)
        self._stream, self._noun = stream, stream.noun
        self.max_bytes, self.backups = max_bytes, backups
        self._reopen = False  # set by SIGHUP (any thread); the writer reopens before its next batch
        self._previous_hup: Any = None
        self._batch_max, self._poll_s = batch_max, poll_s
        counters = stream.counters(metrics)
        self._written = counters.records.labels("written")
        self._losses = Losses(counters, log)
        self._queue: RecordQueue[bytes] = RecordQueue(queue_size, self._losses.counter("queue"))
        self._depth = counters.queue_depth
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: io.FileIO | None = None
        self._kept_end: int | None = None  # while a batch is written: file size after its last whole chunk
        self._kept_records = 0  # ... and the records up to there

    def start(self) -> None:
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._open()
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            self._previous_hup = signal.signal(signal.SIGHUP, self._on_hup)
        self._thread = threading.Thread(target=self._run, name=f"{self._stream.thread}-file", daemon=True)
        self._thread.start()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reopen = True
        if callable(self._previous_hup):
            self._previous_hup(signum, frame)

    def submit(self, record: Record) -> None:
        if self._queue.refuses():  # full or closed: counted as dropped, not encoded
            self._queue.drop()
        else:
            self._queue.submit(self._stream.json_line(record))

    def submit_all(self, records: Sequence[Record]) -> bool:
        """All queued, or none (queue full or closed): for a caller that can retry (outcomes)."""
        if self._queue.refuses(len(records)):
            return False
        return self._queue.offer_all([self._stream.json_line(record) for record in records])

    def close(self, timeout_s: float = 10.0) -> None:
        if not self._queue.close():
            return
        self._stop.set()
        if self._previous_hup is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._previous_hup)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("%s file writer did not finish in %.1f s; records may be lost", self._noun, timeout_s)
                return
        if self._file is not None:
            self._write_all()  # anything submitted between the thread's last drain and close
            try:
                os.fsync(self._file.fileno())
            except (OSError, ValueError) as exc:  # a full disk, or a file a failed rotation left closed
                log.error("%s %s: final fsync failed: %s", self._noun, self.path, exc)
            self._file.close()

    def _run(self) -> None:
        enroll()
        while not self._stop.is_set():
            if not self._write_batch():
                self._stop.wait(self._poll_s)
        self._write_all()

    def _write_all(self) -> None:
        for _ in range(len(self._queue) // self._batch_max + 2):  # bounded: the queue only shrinks here
            if not self._write_batch():
                return

    def _write_batch(self) -> int:
        batch = self._queue.drain(self._batch_max)
        self._depth.set(len(self._queue))
        if not batch or self._file is None:
            return 0
        self._kept_end, self._kept_records = None, 0
        try:
            if self._file.closed:  # a rotation that failed half-way (a full disk) closed it
                self._file = self._open()
            if self._reopen or self._moved():
                self._open_again()
            self._write_records(batch)
            if self.max_bytes and self._file.tell() >= self.max_bytes:
                self._rotate()
        except OSError as exc:  # disk full, file removed: keep serving, keep whole records only, count the loss
            kept = self._cut_back() if self._kept_end is not None else self._kept_records
            self._written.inc(kept)
            self._losses.count(len(batch) - kept, reason_of(exc))
            self._losses.log(len(batch) - kept, f"{self._noun} write to {self.path} failed: {exc}")
            return len(batch)
        self._written.inc(len(batch))
        return len(batch)

    def _cut_back(self) -> int:
        """After a failed write: cut the file back to its last whole record; how many of the batch it kept."""
        assert self._file is not None and self._kept_end is not None
        kept, end, self._kept_end = self._kept_records, self._kept_end, None
        try:
            os.ftruncate(self._file.fileno(), end)
        except OSError as exc:  # not seen so far: shrinking a file needs no room
            log.error("%s %s: cannot cut a torn write back to byte %d: %s", self._noun, self.path, end, exc)
        return kept

    def _write_records(self, batch: list[bytes]) -> None:
        """Write the lines in chunks of ~64 KB: each writev gives the GIL back, and a failed one loses only the
        chunk it carried (docs/performance.md#file-log-writing)."""
        assert self._file is not None
        fd = self._file.fileno()
        self._kept_end = os.fstat(fd).st_size
        lines: list[bytes] = []
        size = 0
        for line in batch:
            lines.append(line)
            size += len(line)
            if size >= _CHUNK_BYTES:
                pace(self._queue.backlog)  # with pacing on: the chunks in the loop's idle gaps
                self._write_chunk(fd, lines, size)
                lines, size = [], 0
        if lines:
            self._write_chunk(fd, lines, size)
        self._kept_end = None

    def _write_chunk(self, fd: int, lines: list[bytes], size: int) -> None:
        write_lines(fd, lines)
        assert self._kept_end is not None
        self._kept_end += size
        self._kept_records += len(lines)

    def _moved(self) -> bool:
        """PATH no longer names the open file (moved or deleted by someone else)."""
        assert self._file is not None
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        held = os.fstat(self._file.fileno())
        return (on_disk.st_ino, on_disk.st_dev) != (held.st_ino, held.st_dev)

    def _open_again(self) -> None:
        self._reopen = False
        assert self._file is not None
        self._file.close()
        self._file = self._open()
        log.info("%s file %s reopened", self._noun, self.path)

    def _rotate(self) -> None:
        """PATH -> PATH.1 (older ones shift up, the oldest beyond `backups` removed), then a new PATH."""
        assert self._file is not None
        os.fsync(self._file.fileno())
        self._file.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            self._backup(self.backups).unlink(missing_ok=True)
            for n in range(self.backups - 1, 0, -1):
                if self._backup(n).exists():
                    os.replace(self._backup(n), self._backup(n + 1))
            os.replace(self.path, self._backup(1))
        self._file = self._open()

    def _open(self) -> io.FileIO:
        return io.FileIO(self.path, "ab")  # unbuffered: write_lines hands whole lines to the kernel

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")


def write_lines(fd: int, lines: list[bytes]) -> None:
    """All of `lines` to `fd`, in order, with writev(2) (at most IOV_MAX buffers per call). A short write (a
    signal, a full disk at the edge) goes on from the first byte not written; an error raises OSError."""
    for start in range(0, len(lines), _IOV_MAX):
        chunk = lines[start : start + _IOV_MAX]
        written = os.writev(fd, chunk)
        total = sum(map(len, chunk))
        if written < total:
            rest = memoryview(b"".join(chunk))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]
