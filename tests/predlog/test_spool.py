"""Disk spool: order, framing/CRC recovery, the size bound, deletion only after ack."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sibyl.predlog.spool import MAGIC, Spool, encode_frame


def payloads(n: int, start: int = 0, size: int = 20) -> list[bytes]:
    return [f"rec-{i:06d}".encode().ljust(size, b".") for i in range(start, start + n)]


def drain(spool: Spool, chunk: int = 7) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(10_000):
        batch = spool.read(chunk)
        if not batch.payloads:
            return out
        out.extend(batch.payloads)
        spool.ack(batch)
    raise AssertionError("spool never emptied")


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


def opened(directory: Path, max_bytes: int = 1 << 20, **kw: Any) -> Spool:
    spool = Spool(directory, max_bytes=max_bytes, **kw)
    spool.open()
    return spool


def closed_with(directory: Path, n: int) -> Path:
    """A spool that got payloads(n) and was closed; its (one) segment file."""
    spool = opened(directory)
    spool.append(payloads(n))
    spool.close()
    return segments(directory)[0]


def opened_capturing(directory: Path, caplog: pytest.LogCaptureFixture) -> Spool:
    """The spool opened with its warnings captured (recovery reports what it dropped)."""
    with caplog.at_level(logging.WARNING, logger="sibyl.predlog.spool"):
        return opened(directory)


def test_replays_in_append_order_across_segments(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=200)
    written = payloads(50)
    for i in range(0, 50, 3):  # appends of mixed sizes roll over many segments
        assert spool.append(written[i : i + 3]) == len(written[i : i + 3])
    assert len(segments(tmp_path)) > 3
    assert drain(spool) == written
    assert not spool.has_pending()
    assert segments(tmp_path) == []
    assert spool.pending_bytes == 0


def test_read_does_not_consume_until_ack(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    spool.append(payloads(5))
    first = spool.read(3)
    assert spool.read(3).payloads == first.payloads  # a failed send re-reads the same records
    spool.ack(first, count=2)  # only a prefix was delivered
    assert spool.read(10).payloads == payloads(3, start=2)


def test_segment_deleted_only_after_all_its_records_acked(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=90)  # 3 frames fill one
    for chunk in (payloads(3), payloads(3, 3), payloads(3, 6)):
        spool.append(chunk)
    first_segment = segments(tmp_path)[0]
    batch = spool.read(2)
    spool.ack(batch)
    assert first_segment.exists()  # one of its records is still unacked
    spool.ack(spool.read(1))
    assert not first_segment.exists()
    assert drain(spool) == payloads(6, 3)


def test_survives_reopen_and_new_appends_follow_old_ones(tmp_path: Path) -> None:
    closed_with(tmp_path, 4)
    again = opened(tmp_path)
    again.append(payloads(2, 4))
    assert drain(again) == payloads(6)


def test_torn_tail_is_cut_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = closed_with(tmp_path, 3)
    with path.open("ab") as f:  # a crash in the middle of writing a fourth frame
        f.write(encode_frame(b"never-finished")[:9])
    again = opened_capturing(tmp_path, caplog)
    assert "torn or corrupt" in caplog.text
    assert drain(again) == payloads(3)


def test_crc_catches_a_flipped_byte(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = closed_with(tmp_path, 3)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # inside the last payload: length is intact, only the CRC can tell
    path.write_bytes(bytes(data))
    again = opened_capturing(tmp_path, caplog)
    assert "torn or corrupt" in caplog.text
    assert drain(again) == payloads(2)


def test_file_without_header_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / f"{1:020d}.spool").write_bytes(b"garbage")
    spool = opened_capturing(tmp_path, caplog)
    assert "no spool header" in caplog.text
    assert not spool.has_pending()


def test_size_bound_refuses_what_does_not_fit(tmp_path: Path) -> None:
    frame = len(encode_frame(payloads(1)[0]))
    spool = opened(tmp_path, max_bytes=len(MAGIC) + 5 * frame)
    assert spool.append(payloads(3)) == 3
    assert spool.append(payloads(4, 3)) == 2  # the caller counts the other two as dropped
    assert spool.append(payloads(1, 7)) == 0
    assert sum(p.stat().st_size for p in segments(tmp_path)) <= spool.max_bytes
    assert drain(spool) == payloads(5)
    assert spool.append(payloads(1, 9)) == 1  # acked space is reusable


def test_maybe_sync_respects_interval(tmp_path: Path) -> None:
    spool = opened(tmp_path, fsync_interval_s=3600)
    spool.append(payloads(1))
    spool.maybe_sync()
    assert spool._dirty_since is not None  # too early: still dirty
    spool.maybe_sync(force=True)
    assert spool._dirty_since is None


def test_a_short_write_leaves_the_spool_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk can make os.write write part of the data. Before: the torn bytes stayed in the segment with
    sizes not counting them, so every later frame was read at the wrong offset (CRC mismatch): reads came back
    empty while has_pending stayed true, and the sender retried that forever."""
    import sibyl.predlog.spool as spool_module

    spool = opened(tmp_path / "s")
    assert spool.append(payloads(3)) == 3
    real_write = spool_module.os.write
    calls = {"n": 0}

    def short_once(fd: int, data: bytes) -> int:  # a fake file: the first write of real data gets half in
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: len(data) // 2 + 5])  # one frame and a torn piece
        return real_write(fd, data)

    monkeypatch.setattr(spool_module.os, "write", short_once)
    with pytest.raises(OSError, match="short write"):
        spool.append(payloads(2, start=3))
    assert spool.append(payloads(2, start=5)) == 2  # the disk has room again
    assert drain(spool) == payloads(3) + payloads(2, start=5)
    assert not spool.has_pending()
    spool.close()
    assert not opened(tmp_path / "s").has_pending()  # and nothing torn is left on disk
