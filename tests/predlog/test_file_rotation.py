"""File sink rotation by size and reopening after an external move (logrotate + SIGHUP): every record lands in
exactly one of the files, none in a file that was moved away (issue 14: the file grew without bound and kept
being written through its old name after logrotate moved it)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sibyl.observability.metrics import Metrics
from sibyl.predlog.file import FileSink
from sibyl.predlog.jsonl import from_json_line
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.kafkaread import wait_for


def rec(i: int) -> PredictionLog:
    return PredictionLog(prediction_id=f"id-{i:05d}", predictor="p", scores=[0.25] * 10)


def ids(path: Path) -> list[str]:
    return [from_json_line(line).prediction_id for line in path.read_text().splitlines()] if path.exists() else []


def test_size_rotation_keeps_backups_and_every_record(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    sink = FileSink(path, Metrics(), batch_max=50, max_bytes=8_000, backups=3)
    sink.start()
    for i in range(300):  # ~70 bytes each: ~21 KB, two rotations
        sink.submit(rec(i))
    sink.close()
    files = [path, *(path.with_name(f"p.jsonl.{n}") for n in (1, 2, 3))]
    kept = [i for f in reversed(files) for i in ids(f)]  # oldest backup first
    assert kept == [f"id-{i:05d}" for i in range(300)]
    assert path.with_name("p.jsonl.1").exists() and path.with_name("p.jsonl.2").exists()
    for f in files[1:]:
        if f.exists():
            assert f.stat().st_size < 8_000 + 50 * 200  # rotated at the first batch past max_bytes


def test_backups_beyond_the_limit_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    sink = FileSink(path, Metrics(), batch_max=20, max_bytes=2_000, backups=2)
    sink.start()
    for i in range(400):
        sink.submit(rec(i))
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    newest = ids(path.with_name("p.jsonl.2")) + ids(path.with_name("p.jsonl.1")) + ids(path)
    assert newest == [f"id-{i:05d}" for i in range(400 - len(newest), 400)]  # the newest, in order


def test_logrotate_move_then_sighup_reopens_the_path(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    metrics = Metrics()
    sink = FileSink(path, metrics, poll_s=0.01)
    sink.start()  # on the main thread: installs the SIGHUP handler
    try:
        for i in range(100):
            sink.submit(rec(i))
        wait_for(lambda: len(ids(path)) == 100, 5, "the first records written")
        moved = tmp_path / "p.jsonl-20261201"
        os.rename(path, moved)  # what logrotate does (without copytruncate)
        os.kill(os.getpid(), signal.SIGHUP)  # then its postrotate
        for i in range(100, 200):
            sink.submit(rec(i))
        wait_for(lambda: len(ids(path)) == 100, 5, "records after the move in a new file at the path")
    finally:
        sink.close()
    assert ids(moved) == [f"id-{i:05d}" for i in range(100)]
    assert ids(path) == [f"id-{i:05d}" for i in range(100, 200)]
    assert signal.getsignal(signal.SIGHUP) is not sink._on_hup  # close() put the previous handler back


def test_a_moved_file_is_noticed_without_a_signal(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    sink = FileSink(path, Metrics(), poll_s=0.01)
    sink.start()
    try:
        sink.submit(rec(0))
        wait_for(lambda: len(ids(path)) == 1, 5, "the first record written")
        os.rename(path, tmp_path / "old.jsonl")
        sink.submit(rec(1))
        wait_for(lambda: len(ids(path)) == 1, 5, "the next record at the path again")
    finally:
        sink.close()
    assert ids(tmp_path / "old.jsonl") == ["id-00000"] and ids(path) == ["id-00001"]
