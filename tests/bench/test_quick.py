"""The quick benchmark at a tiny rate against local servers (sibyl, echo, real Redis and Kafka-protocol broker):
every scenario and baseline runs, and results.json / results.md / PNGs are complete and well formed.
No assertion on speed: the machine may be busy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from benchmarks.suite import ALL_NAMES, PEERS

REPO = Path(__file__).resolve().parents[2]
FIELDS = ("name", "target_rps", "achieved_rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "errors")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    args = ["--quick", "--out", str(out), "--max-rps", "20", "--duration", "1", "--warmup", "0.3"]
    args += ["--step-duration", "1", "--sweep-steps", "1", "--skip", ",".join(PEERS)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=REPO, capture_output=True, text=True, timeout=150
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_every_entry_ran_with_sane_numbers(out: Path) -> None:
    doc = json.loads((out / "results.json").read_text())
    entries = {e["name"]: e for e in doc["scenarios"]}
    assert set(entries) == set(ALL_NAMES) - set(PEERS)
    skipped = {n: e["skipped"] for n, e in entries.items() if "skipped" in e}
    assert not skipped
    for name, e in entries.items():
        assert all(f in e for f in FIELDS), name
        assert 0 < e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"] <= e["p999_ms"] <= e["max_ms"], name
        assert e["achieved_rps"] > 0 and e["errors"] == {}, name
        if name != "limit-inprocess":
            assert e["target_rps"] <= 20 and e["requests"] >= 10 and e["sweep"], name
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["git_sha"] and machine["packages"]["grpcio"]
    assert {t["name"] for t in doc["targets"]} >= {"single-row-p50", "redis-fill-p99", "shadow-log-p99"}
    assert {t["status"] for t in doc["targets"]} <= {"met", "MISSED", "n/a"}


def test_markdown_table_lists_every_entry_and_target(out: Path) -> None:
    md = (out / "results.md").read_text()
    assert "| scenario | kind | offered rps |" in md and "## Targets" in md
    for name in set(ALL_NAMES) - set(PEERS):
        assert f"| {name} |" in md


def test_plots_are_real_pngs(out: Path) -> None:
    for png in ("latency_vs_rate.png", "latency_cdf.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(out / png)
        assert image.shape[0] > 200 and image.shape[1] > 400
