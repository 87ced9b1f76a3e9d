"""The preStop hook waits for the running server to replay its prediction-log spool, bounded, and always exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sibyl.predlog.spool import Spool
from sibyl.process.spools import worker_dir


def spooled(folder: Path) -> Path:
    spool = Spool(folder, max_bytes=1 << 20)
    spool.open()
    spool.append([b"a record waiting for the broker"])
    spool.close()
    (segment,) = folder.glob("*.spool")
    return segment


def prestop(spool_dir: Path, max_wait: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIBYL_")}
    command = [sys.executable, "-m", "sibyl.process.prestop", "--sleep", "0", "--max-wait", str(max_wait)]
    return subprocess.Popen([*command, "--spool-dir", str(spool_dir)], env=env, stdout=subprocess.PIPE, text=True)


def test_waits_until_every_worker_spool_is_replayed(tmp_path: Path) -> None:
    segment = spooled(worker_dir(tmp_path, 1))
    proc = prestop(tmp_path, max_wait=60)
    try:
        time.sleep(1.0)
        assert proc.poll() is None, "returned while a record was still spooled"
        segment.unlink()  # what the server's sender does once the broker acknowledged the segment
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out.startswith(f"prestop: spool {tmp_path} empty after")


def test_gives_up_after_max_wait_and_leaves_the_spool(tmp_path: Path) -> None:
    segment = spooled(tmp_path)
    proc = prestop(tmp_path, max_wait=0.5)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "bytes still spooled" in out and "they stay on the volume" in out
    assert segment.exists()
