"""Progress: a tqdm bar when stderr is a terminal (a real pseudo-terminal here), plain lines otherwise; for the
Progress class and for `sibyl score` and `sibyl features load` run as a user runs them."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import pytest

from sibyl.cli.progress import Progress
from tests.cli.input_files import write_input
from tests.support.inproc import CONSUMERS

ANSI_OR_CR = ("\r", "\x1b[")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_most_every_interval_when_not_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("loading", out=out, every_s=1.0, clock=clock)
    progress.update_to(500)  # before the first interval: nothing
    clock.now += 1.0
    progress.update_to(1000, "up to line 1001")
    clock.now += 0.5
    progress.update(10)  # within the interval: nothing
    clock.now += 0.5
    progress.update(990)
    progress.write("a message")
    progress.close()
    assert out.getvalue().splitlines() == [
        "loading: 1,000 rows (1,000 rows/s), up to line 1001",
        "loading: 2,000 rows (1,000 rows/s)",
        "a message",
    ]
    assert not any(mark in out.getvalue() for mark in ANSI_OR_CR)


def open_terminal() -> tuple[int, int]:
    """A pseudo-terminal 120 columns wide (a fresh one is 0 x 0, and a bar needs a width)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    return master, slave


def read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_a_bar_on_a_terminal() -> None:
    master, slave = open_terminal()
    with os.fdopen(slave, "w") as terminal:
        assert terminal.isatty()
        progress = Progress("scoring", total=300, out=terminal)
        progress.update_to(100)
        progress.write("between updates")
        progress.update_to(300, "m@1")
        progress.close()
        terminal.flush()
        shown = read_all(master)
    os.close(master)
    assert "\r" in shown and "between updates" in shown
    assert "scoring: 100%" in shown and "300/300" in shown and "m@1" in shown


def run_on(cmd: list[str], terminal: bool, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal (terminal=True) or a pipe; returns (exit code, stderr)."""
    if not terminal:
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stderr
    master, slave = open_terminal()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready = select.select([master], [], [], 60)[0]
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def sibyl_env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIBYL_")}
    env |= {"SIBYL_FEATURES__BACKEND": "memory", "SIBYL_FEATURES__MEMORY_FILE": str(store / "features.jsonl")}
    env |= {"SIBYL_PREDLOG__PATH": str(store / "log.jsonl"), "SIBYL_PREDLOG__SPOOL_DIR": str(store / "spool")}
    return env


def test_score_shows_a_bar_on_a_terminal_and_lines_otherwise(make_store: Callable[..., Path]) -> None:
    store = make_store(CONSUMERS)
    write_input(store / "in.csv")
    cmd = [sys.executable, "-m", "sibyl", "score", str(store / "in.csv"), str(store / "out.csv"), "--predictor",
           "p", "--in-process", "--store", f"file://{store / 'store'}", "--batch-rows", "500"]  # fmt: skip
    code, shown = run_on(cmd, True, sibyl_env(store), store)
    assert code == 0, shown
    assert "\r" in shown and "scoring: " in shown and "2.50k rows" in shown
    code, shown = run_on(cmd, False, sibyl_env(store), store)
    assert code == 0, shown
    assert not any(mark in shown for mark in ANSI_OR_CR)
    assert shown.splitlines()[-1].startswith("scored 2,500 rows in ")


def test_features_load_shows_a_bar_on_a_terminal_and_lines_otherwise(tmp_path: Path) -> None:
    data = tmp_path / "features.csv"
    data.write_text("consumer_id,age\n" + "".join(f"c{i},{i % 90}\n" for i in range(3000)))
    cmd = [sys.executable, "-m", "sibyl", "features", "load", str(data), "--dry-run", "--chunk-rows", "500"]
    code, shown = run_on(cmd, True, sibyl_env(tmp_path), tmp_path)
    assert code == 0, shown
    assert "\r" in shown and "loading: " in shown and "3.00k rows" in shown and "up to line 3001" in shown
    code, shown = run_on(cmd, False, sibyl_env(tmp_path), tmp_path)
    assert code == 0, shown
    assert not any(mark in shown for mark in ANSI_OR_CR)
    assert shown.splitlines()[-1].startswith("checked 3000 entities in ")


def test_the_benchmark_suite_reports_each_entry_through_its_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """python -m benchmarks: Runner.add moves the suite's Progress; [bench] messages go through it (above a bar)."""
    from benchmarks.load import measure

    out = io.StringIO()
    bar = Progress("bench", unit="entries", out=out, every_s=0.0, line=lambda n, _, note: f"[bench] {n} done{note}")
    monkeypatch.setattr(measure, "PROGRESS", bar)
    runner = measure.Runner(plan=None, pool=None)  # type: ignore[arg-type]  # add() reads neither
    measure.say("starting")
    runner.add(measure.Entry("sibyl-v2", "sibyl", "V2 ModelInfer"))
    runner.skip(measure.Entry("peer-triton", "peer", "Triton"), "no tritonserver")
    assert [e.name for e in runner.entries] == ["sibyl-v2", "peer-triton"]
    lines = out.getvalue().splitlines()
    assert lines[0] == "[bench] starting" and lines[-1].startswith("[bench] 2 done, ")
    assert lines[1].startswith("[bench] 1 done, ") and any("skipped: no tritonserver" in line for line in lines)
