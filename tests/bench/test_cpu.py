"""CPU accounting of the benchmark: a server's whole process tree from /proc, the client's own CPU, per answered
call. CPU seconds burned are counted (in clock ticks), never wall-clock time."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.load import cpu
from benchmarks.load.loadgen import RunResult, closed_loop

BURN_S = 0.3
# A child that starts a grandchild, which burns BURN_S of CPU, says so, and then sleeps.
BURN_IN_GRANDCHILD = Path(__file__).parent / "programs" / "burn_in_grandchild.py"


@pytest.fixture
def tree() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """(child, grandchild pid) once the grandchild has burned its CPU."""
    child = subprocess.Popen([sys.executable, str(BURN_IN_GRANDCHILD), str(BURN_S)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "burned"
        kids = [p for p in cpu.tree(child.pid) if p != child.pid]
        assert len(kids) == 1
        yield child, kids[0]
    finally:
        for pid in cpu.tree(child.pid)[::-1]:  # the grandchild first, then the child we started
            subprocess.run(["kill", str(pid)], check=False)
        child.wait(10)


def test_tree_cpu_counts_a_grandchild(tree: tuple[subprocess.Popen[str], int]) -> None:
    child, grandchild = tree
    tick = cpu.TICK_S
    assert cpu.process_cpu_s(grandchild) >= BURN_S - 2 * tick
    assert cpu.tree_cpu_s(child.pid) >= cpu.process_cpu_s(grandchild) + cpu.process_cpu_s(child.pid) - tick
    assert cpu.process_cpu_s(child.pid) < BURN_S / 2  # the child itself only waits
    assert cpu.rss_bytes(grandchild) > 1_000_000
    assert {p["pid"] for p in cpu.tree_rss(child.pid)} == {child.pid, grandchild}


def test_a_gone_process_counts_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(done.stdout)
    assert cpu.process_cpu_s(gone) == 0.0 and cpu.rss_bytes(gone) == 0 and cpu.tree(gone) == [gone]


def test_window_reads_the_server_tree_and_this_process() -> None:
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        window = cpu.Window(burner.pid)
        window.begin()
        t = time.process_time()
        while time.process_time() - t < 0.1:  # this process burns 0.1 s of its own
            pass
        deadline = cpu.process_cpu_s(burner.pid) + 0.1
        while cpu.process_cpu_s(burner.pid) < deadline:  # bounded by the burner's own progress
            time.sleep(0.01)
        window.end()
    finally:
        burner.kill()
        burner.wait(10)
    assert window.server_cpu_s is not None and window.server_cpu_s >= 0.1 - cpu.TICK_S
    assert window.client_cpu_s >= 0.1 - 0.01
    assert window.wall_s > 0


def test_closed_loop_fills_the_cpu_fields() -> None:
    async def call() -> None:
        t = time.process_time()
        while time.process_time() - t < 0.001:
            pass

    import asyncio

    window = cpu.Window(None)
    r = asyncio.run(closed_loop(call, 2, duration_s=0.2, warmup_s=0.05, window=window))
    assert r.ok > 0 and r.concurrency == 2
    assert r.server_cpu_s is None and r.server_cpu_us_per_call is None
    per_call = r.client_cpu_us_per_call
    assert per_call is not None and per_call >= 900  # each call burns 1 ms of the client's CPU


def test_per_call_figures() -> None:
    r = RunResult("closed", 0.0, 1.0, ok=200, server_cpu_s=0.5, client_cpu_s=0.1)
    assert r.server_cpu_us_per_call == pytest.approx(2500) and r.client_cpu_us_per_call == pytest.approx(500)
    assert RunResult("closed", 0.0, 1.0).client_cpu_us_per_call is None
