"""The interference scenario's quick form: it runs against a real `sibyl serve` and reports A's latency with B off
and on, B's throughput and the server's CPU. No assertion on the numbers: the machine may be busy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_interference_reports_both_phases(tmp_path: Path) -> None:
    out = tmp_path / "interference.json"
    args = ["--rate", "50", "--big-rows", "2000", "--duration", "1", "--warmup", "0.3", "--repeats", "1"]
    args += ["--variant", "thread:SIBYL_SERVER__DECODE_PROCESSES=0", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scenarios.interference", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "B on" in done.stdout and "B off" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["settings"]["big_rows"] == 2000 and doc["settings"]["big_bytes"] > 0
    assert set(doc["variants"]) == {"defaults", "thread"}
    for variant in doc["variants"].values():
        for phase in ("off", "on"):
            node = variant[phase]
            assert node["errors"] == {}, node
            assert 0 < node["p50"]["median"] <= node["p99"]["median"] <= node["p999"]["median"]
            assert node["cores"]["median"] > 0 and node["cpu_per_call"]["median"] > 0
        assert variant["on"]["big_calls_s"]["median"] > 0 and variant["on"]["big_rows_s"]["median"] > 0
        assert variant["off"]["big_calls_s"] is None
