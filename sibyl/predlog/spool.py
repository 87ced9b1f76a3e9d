"""Append-only disk spool for records the broker could not take, replayed in order when it returns.

Layout: `<dir>/<seq:020d>.spool` segments, oldest first. A segment starts with the 8-byte magic
`SIBYLSP1`; then frames of `length (u32 big-endian) | crc32(payload) (u32 big-endian) | payload`.
Durability: each append is one write(2) (so a killed process leaves whole frames in the page cache);
segments are fsync'd when they roll and by `maybe_sync()` at most `fsync_interval_s` after a write.
Replay: `read(n)` returns the oldest unacked payloads without consuming them; `ack(batch)` moves the
cursor past them and deletes every segment whose records are all acked. The cursor lives in memory, so
after a restart the head segment replays from its start (duplicates, never losses).
A failed append (a full disk) leaves no partial frame or header behind: the segment is cut back to its last whole
frame, a segment whose header did not fit is removed, and the caller counts the records (docs/reliability.md).
Recovery: on open, each segment is scanned; a torn or corrupt frame (crash mid-write, bad CRC) and
everything after it in that segment is cut off with a warning. New appends always go to a new segment.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"SIBYLSP1"
HEADER = struct.Struct(">II")  # payload length, crc32
MAX_RECORD_BYTES = 64 * 1024 * 1024  # a larger length field can only be corruption
SUFFIX = ".spool"


@dataclass(frozen=True)
class Cursor:
    segment: int  # sequence number of the segment
    offset: int  # byte offset of the next unread frame


@dataclass(frozen=True)
class SpoolBatch:
    payloads: list[bytes]
    end: Cursor  # where the cursor goes once these are acked


def encode_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def scan_frames(data: bytes, start: int = len(MAGIC)) -> tuple[list[tuple[int, bytes]], int]:
    """(offset after each whole valid frame, payload) from `start`, and where the valid prefix ends."""
    frames: list[tuple[int, bytes]] = []
    pos = start
    while pos + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if length > MAX_RECORD_BYTES or end > len(data):
            break
        payload = data[pos + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        frames.append((end, payload))
        pos = end
    return frames, pos


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 16 * 1024 * 1024,
        fsync_interval_s: float = 0.2,
    ) -> None:
        self.directory = directory
        self.max_bytes, self.segment_bytes, self.fsync_interval_s = max_bytes, segment_bytes, fsync_interval_s
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}  # segment seq -> bytes on disk, oldest first
        self._cursor = Cursor(0, len(MAGIC))
        self._fd: int | None = None  # the segment being appended to
        self._write_seq = 0
        self._dirty_since: float | None = None
        self._opened = False

    # ---- lifecycle ----

    def open(self) -> None:
        """Create the directory, recover existing segments (cutting torn tails). Idempotent."""
        with self._lock:
            if self._opened:
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            for seq in sorted(self._existing()):
                self._recover(seq)
            for seq in [s for s, size in self._sizes.items() if size <= len(MAGIC)]:  # no records: nothing to keep
                self._path(seq).unlink()
                del self._sizes[seq]
            first = min(self._sizes, default=0)
            self._cursor = Cursor(first, len(MAGIC))
            self._write_seq = max(self._sizes, default=0)  # next append opens write_seq + 1
            self._opened = True

    def close(self) -> None:
        with self._lock:
            self._close_writer()
            self._opened = False

    # ---- writing ----

    def append(self, payloads: list[bytes]) -> int:
        """Append in order until the size bound; returns how many were written (the rest: caller drops)."""
        if not payloads:
            return 0
        with self._lock:
            room = self.max_bytes - self._total()
            frames: list[bytes] = []
            for payload in payloads:
                frame = encode_frame(payload)
                if len(frame) + (0 if self._fd is not None else len(MAGIC)) > room:
                    break
                frames.append(frame)
                room -= len(frame)
            if frames:
                self._write(frames)
            return len(frames)

    def maybe_sync(self, force: bool = False) -> None:
        """fsync the open segment if it has had unsynced writes for fsync_interval_s (or `force`)."""
        with self._lock:
            since = self._dirty_since
            if self._fd is None or since is None:
                return
            if force or time.monotonic() - since >= self.fsync_interval_s:
                os.fsync(self._fd)
                self._dirty_since = None

    # ---- reading ----

    def read(self, max_records: int) -> SpoolBatch:
        """The oldest unacked payloads (up to max_records, within one segment), without consuming them."""
        with self._lock:
            cur = self._cursor
            for seq in sorted(s for s in self._sizes if s >= cur.segment):
                offset = cur.offset if seq == cur.segment else len(MAGIC)
                if offset < self._sizes[seq]:
                    return self._read_from(seq, offset, max_records)
            return SpoolBatch([], cur)

    def ack(self, batch: SpoolBatch, count: int | None = None) -> None:
        """The first `count` (default: all) payloads of `batch` were delivered: move past them."""
        with self._lock:
            if count is not None and count < len(batch.payloads):
                if count == 0:
                    return
                # re-scan to find the end of the count-th frame: acks of partial batches are rare
                seq = batch.end.segment
                frames, _ = scan_frames(self._read_segment(seq), self._start_offset(seq))
                end = Cursor(seq, frames[count - 1][0])
            else:
                end = batch.end
            self._cursor = end
            self._delete_consumed()

    # ---- state ----

    @property
    def pending_bytes(self) -> int:
        """Bytes of unacked records (approximately: whole segments minus the acked head)."""
        with self._lock:
            return max(0, self._total() - (self._cursor.offset if self._cursor.segment in self._sizes else 0))

    def has_pending(self) -> bool:
        with self._lock:
            cur = self._cursor
            return any(size > (cur.offset if seq == cur.segment else len(MAGIC)) for seq, size in self._sizes.items())

    # ---- internals (lock held) ----

    def _existing(self) -> list[int]:
        out = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                out.append(int(path.name[: -len(SUFFIX)]))
            except ValueError:
                log.warning("ignoring unexpected file in prediction spool: %s", path)
        return out

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{SUFFIX}"

    def _total(self) -> int:
        return sum(self._sizes.values())

    def _recover(self, seq: int) -> None:
        path = self._path(seq)
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            log.warning("prediction spool: %s has no spool header (%d bytes); skipped and removed", path, len(data))
            path.unlink()
            return
        frames, valid_end = scan_frames(data)
        if valid_end < len(data):
            log.warning(
                "prediction spool: %s has a torn or corrupt record at byte %d; %d trailing bytes skipped "
                "(%d whole records kept)",
                path,
                valid_end,
                len(data) - valid_end,
                len(frames),
            )
            os.truncate(path, valid_end)
        self._sizes[seq] = valid_end

    def _write(self, frames: list[bytes]) -> None:
        if self._fd is not None and self._sizes[self._write_seq] >= self.segment_bytes:
            self._close_writer()  # roll: fsync the full segment before starting the next
        fd = self._fd if self._fd is not None else self._new_segment()
        data = b"".join(frames)
        before = self._sizes[self._write_seq]
        try:
            written = os.write(fd, data)
        except OSError:
            self._cut_torn_tail(before)
            raise
        if written != len(data):  # a short write is possible on a full disk: undo it, surface it
            self._cut_torn_tail(before)
            raise OSError(errno.ENOSPC, f"short write to prediction spool ({written} of {len(data)} bytes); not kept")
        self._sizes[self._write_seq] += len(data)
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()

    def _new_segment(self) -> int:
        """Start the next segment with its header. On a full disk the header itself may not fit: then no segment
        is started (the file is removed) and the error goes to the caller, as for any failed append."""
        seq = self._write_seq + 1
        path = self._path(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            if os.write(fd, MAGIC) != len(MAGIC):
                raise OSError(errno.ENOSPC, f"short write of the header of {path}")
            self._sync_dir()
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._write_seq, self._fd = seq, fd
        self._sizes[seq] = len(MAGIC)
        if self._cursor.segment not in self._sizes:
            self._cursor = Cursor(seq, len(MAGIC))
        return fd

    def _cut_torn_tail(self, size: int) -> None:
        """After a failed write: cut the segment back to its last whole frame. Should even that fail, stop
        appending to it (reads stop at the size we hold; a restart's recovery cuts the tail)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            log.error("prediction spool: cannot cut a torn write from %s: %s", self._path(self._write_seq), exc)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self._dirty_since = None

    def _close_writer(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._dirty_since = None

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _start_offset(self, seq: int) -> int:
        return self._cursor.offset if seq == self._cursor.segment else len(MAGIC)

    def _read_segment(self, seq: int) -> bytes:
        with self._path(seq).open("rb") as f:
            return f.read(self._sizes[seq])

    def _read_from(self, seq: int, offset: int, max_records: int) -> SpoolBatch:
        with self._path(seq).open("rb") as f:
            f.seek(offset)
            data = f.read(self._sizes[seq] - offset)
        frames, _ = scan_frames(data, 0)
        frames = frames[:max_records]
        end = Cursor(seq, offset + frames[-1][0]) if frames else Cursor(seq, offset)
        return SpoolBatch([p for _, p in frames], end)

    def _delete_consumed(self) -> None:
        cur = self._cursor
        for seq in sorted(self._sizes):
            fully_read = seq < cur.segment or (seq == cur.segment and cur.offset >= self._sizes[seq])
            if not fully_read:
                break
            if seq == self._write_seq and self._fd is not None:
                self._close_writer()  # the active segment is all acked: finish it, the next append starts anew
            self._path(seq).unlink(missing_ok=True)
            del self._sizes[seq]
        if cur.segment not in self._sizes and self._sizes:
            self._cursor = Cursor(min(self._sizes), len(MAGIC))
