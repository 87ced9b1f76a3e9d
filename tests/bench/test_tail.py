"""The tail scenario's quick form: it runs against a real `sibyl serve` (with its sitecustomize), and its report
has the shape the findings in docs/design.md are read from: percentiles per cell, the server's GC pauses, its
threads' CPU per call, and (with py-spy) GIL holders and per-call stage timelines. No assertion on timings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_tail_finds_the_servers_gc_and_threads(tmp_path: Path) -> None:
    out = tmp_path / "tail.json"
    args = ["--variants", "defaults,pace", "--cells", "native:1,v2:8", "--duration", "1", "--repeats", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scenarios.tail", *args, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "defaults" in done.stdout and "p99.9" in done.stdout
    doc = json.loads(out.read_text())
    assert set(doc["variants"]) == {"defaults", "pace"}  # pace: the after-response threads paced (sibyl.gil)
    assert all(cell["runs"][0]["calls"] > 0 for cell in doc["variants"]["pace"].values())
    cells = doc["variants"]["defaults"]
    assert set(cells) == {"native c=1", "v2 c=8"}
    for cell in cells.values():
        assert 0 < cell["p50"]["median"] <= cell["p99"]["median"] <= cell["p999"]["median"]
        run = cell["runs"][0]
        assert run["calls"] > 0 and run["load1"] >= 0
        assert sum(run["gc"]["collections"].values()) > 0  # the sitecustomize's gc.callbacks saw collections
        assert set(run["gc"]["calls_meeting_gc"]) == {"all", "p99", "p99.9", "median"}
    threads = cells["native c=1"]["runs"][0]["threads_ms_per_call"]
    assert set(threads) == {"p99", "p99.9", "median"}
    assert any(key.startswith("run MainThread") for key in threads["median"])  # the event loop, named by the dump
    named = {key for group in threads.values() for key in group if key.startswith("run ")}
    assert any(not key.startswith(("run MainThread", "run native:")) for key in named)  # the server's own threads
    if shutil.which("py-spy") is None:
        assert doc["forensics"] == {}
        return
    forensic = doc["forensics"]["native c=1"]
    gil = forensic["gil"]["gil"]
    assert gil["anchored"] and gil["samples"] > 0 and set(gil["holder_share"]) == {"all", "p99"}
    assert forensic["traced"]["stages_matched"] > 0
    assert {"before server span", "infer", "after server span"} <= set(forensic["traced"]["stages_ms"]["median"])
