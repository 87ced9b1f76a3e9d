"""Spool segments stranded by a change of --workers are moved to the folder that now replays them, and the
spool there reads every record: the ones it had first, then the adopted ones, each once."""

from __future__ import annotations

from pathlib import Path

from sibyl.predlog.spool import Spool
from sibyl.process.spools import adopt_orphans, worker_dir


def write(folder: Path, *payloads: bytes, segments: int = 1) -> None:
    for _ in range(segments):  # each open + close of a Spool starts a new segment
        spool = Spool(folder, max_bytes=1 << 20)
        spool.open()
        assert spool.append(list(payloads)) == len(payloads)
        spool.close()


def read_all(folder: Path) -> list[bytes]:
    spool = Spool(folder, max_bytes=1 << 20)
    spool.open()
    out: list[bytes] = []
    for _ in range(100):
        batch = spool.read(1000)
        if not batch.payloads:
            break
        out.extend(batch.payloads)
        spool.ack(batch)
    spool.close()
    return out


def test_scale_down_moves_worker_folders_beyond_the_count(tmp_path: Path) -> None:
    for i in range(4):
        write(worker_dir(tmp_path, i), f"w{i}-a".encode(), f"w{i}-b".encode(), segments=2)
    assert adopt_orphans(tmp_path, workers=2) == 4
    assert read_all(worker_dir(tmp_path, 0)) == [b"w0-a", b"w0-b"] * 2 + [b"w2-a", b"w2-b"] * 2
    assert read_all(worker_dir(tmp_path, 1)) == [b"w1-a", b"w1-b"] * 2 + [b"w3-a", b"w3-b"] * 2
    assert read_all(worker_dir(tmp_path, 2)) == read_all(worker_dir(tmp_path, 3)) == []
    assert adopt_orphans(tmp_path, workers=2) == 0  # nothing left to move


def test_single_process_and_workers_take_each_others_segments(tmp_path: Path) -> None:
    write(tmp_path, b"single")
    write(worker_dir(tmp_path, 1), b"w1")
    assert adopt_orphans(tmp_path, workers=2) == 1  # the single process's segment goes to worker-0
    assert read_all(worker_dir(tmp_path, 0)) == [b"single"]
    write(worker_dir(tmp_path, 0), b"w0")
    assert adopt_orphans(tmp_path, workers=None) == 2  # back to one process: it replays both workers'
    assert sorted(read_all(tmp_path)) == [b"w0", b"w1"]


def test_other_files_and_missing_folders_are_left_alone(tmp_path: Path) -> None:
    assert adopt_orphans(tmp_path / "absent", workers=2) == 0
    write(worker_dir(tmp_path, 1), b"w1")
    assert adopt_orphans(tmp_path, workers=1) == 1  # a supervisor of one worker: worker-0 replays worker-1's
    assert read_all(worker_dir(tmp_path, 0)) == [b"w1"]
    (worker_dir(tmp_path, 3)).mkdir(parents=True)
    (worker_dir(tmp_path, 3) / "dead-letters.jsonl").write_text("{}\n")
    assert adopt_orphans(tmp_path, workers=2) == 0
    assert (worker_dir(tmp_path, 3) / "dead-letters.jsonl").exists()
