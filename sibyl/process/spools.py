"""Prediction-log spool segments left where no process will replay them, moved to one that will.

A single process spools into `spool_dir`; `--workers N` gives worker i `spool_dir/worker-<i>`. Change N (or go
from one process to several and back) and segments stay in folders no process opens: worker-5 after a scale
from 8 workers to 4, the top-level folder after a switch from 1 to 2, worker-0 after a switch back to 1.
Before any process opens its spool, `adopt_orphans` moves each orphaned segment into the folder that now
replays it (worker j's go to worker j mod N, the top level's to worker-0, all of them to the top level for one
process), renamed after that folder's own segments so its backlog replays first. A rename within one file
system is atomic: a segment is in exactly one folder at any time, never in two, never lost.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from sibyl.predlog.outcome_sink import OUTCOME_SPOOL
from sibyl.predlog.spool import SUFFIX

log = logging.getLogger(__name__)
WORKER_DIR = re.compile(r"^worker-(\d+)$")


def worker_dir(root: Path, index: int) -> Path:
    return root / f"worker-{index}"


def _segments(folder: Path) -> list[tuple[int, Path]]:
    """(sequence, path) of the spool segments directly in `folder`, oldest first."""
    out = []
    for path in folder.glob(f"*{SUFFIX}"):
        stem = path.name[: -len(SUFFIX)]
        if stem.isdigit():
            out.append((int(stem), path))
    return sorted(out)


def _move(source: Path, target: Path) -> int:
    segments = _segments(source)
    if not segments:
        return 0
    target.mkdir(parents=True, exist_ok=True)
    seq = max((s for s, _ in _segments(target)), default=0)
    for _, path in segments:
        seq += 1
        os.rename(path, target / f"{seq:020d}{SUFFIX}")
    for folder in (target, source):  # make the renames durable before anything reads or writes
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    log.warning(
        "prediction spool: %d segment(s) from %s moved to %s, which replays them", len(segments), source, target
    )
    return len(segments)


def adopt_orphans(root: Path, workers: int | None) -> int:
    """Move segments no process would replay; returns how many moved. workers: the supervisor's worker count
    (folders worker-0 .. worker-<N-1>), or None for a single process spooling in `root` itself. The outcome
    spool (a folder `outcomes` inside each of those: predlog/outcome_sink.py) is adopted the same way.

    Call it before any process of this server opens its spool (the supervisor before it starts workers).
    """
    if not root.is_dir():
        return 0
    return sum(_adopt(root, workers, stream) for stream in ("", OUTCOME_SPOOL))


def _adopt(root: Path, workers: int | None, stream: str) -> int:
    moved = 0
    for child in sorted(root.iterdir()):
        match = WORKER_DIR.match(child.name)
        if match is None or not child.is_dir():
            continue
        index = int(match.group(1))
        if workers is None:
            moved += _move(child / stream, root / stream)
        elif index >= workers:
            moved += _move(child / stream, worker_dir(root, index % workers) / stream)
    if workers is not None:
        moved += _move(root / stream, worker_dir(root, 0) / stream)
    return moved
