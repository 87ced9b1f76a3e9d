"""The quick benchmark against local servers (the echo floor, sibyl on default settings and its variants, real
Redis and Kafka-protocol broker, perf_analyzer), peers left out: every entry runs and answers correctly, every
run carries server and client CPU per call, and results.json / results.md / PNGs are complete and well formed.
No assertion on speed: the machine may be busy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import pytest

from benchmarks.load import perf_analyzer
from benchmarks.suite import ALL_NAMES, PEERS

REPO = Path(__file__).resolve().parents[2]
COMPARE_ROWS = {"echo-v2", "echo-native", "sibyl-v2", "sibyl-native", "sibyl-v2-nolog", "sibyl-native-nolog",
                "sibyl-native-kafka"}  # fmt: skip
PNGS = ("latency_vs_rate.png", "latency_cdf.png", "cpu_per_call.png", "growth.png")


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    # Runs as short as still give each run some hundred calls: this test proves the suite and its report, not speed.
    args = ["--quick", "--out", str(out), "--max-rps", "50", "--duration", "0.3", "--warmup", "0.1"]
    args += ["--step-duration", "0.3", "--sweep-steps", "1", "--fixed-duration", "1", "--concurrency", "1,4"]
    args += ["--skip", ",".join(PEERS)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=REPO, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def closed_runs(e: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for c in e["closed"].values() for r in c["runs"]]


@pytest.mark.timeout(300)
def test_every_entry_ran_and_answered_right(doc: tuple[Path, dict[str, Any]]) -> None:
    _, d = doc
    entries = d["entries"]
    skipped = {e["label"]: e["skipped"] for e in entries if "skipped" in e}
    if perf_analyzer.binary() is None:  # scripts/test.sh sets it up; elsewhere its rows say how
        skipped = {k: v for k, v in skipped.items() if "setup_perf_analyzer.sh" not in v}
    assert not skipped
    names = {e["name"] for e in entries}
    scenarios = {"mlp-256", "redis-fill", "shadow-log", "shadow-log-confluent", "shadow-kafka-1"}
    assert COMPARE_ROWS | scenarios | {"limit-inprocess"} <= names
    compare = [e for e in entries if e["section"] == "compare" and e["client"] == "python"]
    assert {(e["name"], e["rows"]) for e in compare} == {(n, r) for n in COMPARE_ROWS for r in (1, 100)}
    for e in [*compare, *(e for e in entries if e["section"] in ("scenarios", "growth"))]:
        assert set(e["closed"]) == {"1", "4"}, e["label"]
        for r in closed_runs(e):
            assert r["ok"] > 0 and r["errors"] == {}, e["label"]
            assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], e["label"]
            assert r["server_cpu_us_per_call"] > 0 and r["client_cpu_us_per_call"] > 0, e["label"]
        if e["rows"] == 1 and e["kind"] in ("floor", "sibyl"):
            assert e["sweep"]["steps"] and e["sweep"]["max_rps"] is not None, e["label"]
    fixed = {e["name"]: e["fixed"] for e in entries if "fixed" in e and e["section"] == "scenarios"}
    assert (
        set(fixed) == {"redis-fill", "shadow-log", "shadow-log-confluent"}
        and fixed["shadow-log"]["target_rps"] == fixed["redis-fill"]["target_rps"]
        and fixed["shadow-log-confluent"]["target_rps"] == fixed["redis-fill"]["target_rps"]
    )


def test_perf_analyzer_rows_drive_sibyl_v2(doc: tuple[Path, dict[str, Any]]) -> None:
    if perf_analyzer.binary() is None:
        pytest.skip("perf_analyzer not set up: bash scripts/setup_perf_analyzer.sh")
    _, d = doc
    perf = [e for e in d["entries"] if e["client"] == "perf_analyzer"]
    assert {(e["name"], e["rows"]) for e in perf} == {("sibyl-v2", 1), ("sibyl-v2", 100)}
    for e in perf:
        for c in ("1", "4"):
            node = e["perf"][c]
            assert not node["errors"] and node["runs"], e["label"]
            run = node["runs"][0]
            assert run["requests_per_s"] > 0 and run["calls"] > 0 and run["server_cpu_us_per_call"] > 0


def test_growth_covers_rows_models_and_workers(doc: tuple[Path, dict[str, Any]]) -> None:
    _, d = doc
    growth = [e for e in d["entries"] if e["section"] == "growth"]
    axes = {dim: set() for dim in ("growth-rows", "growth-models", "growth-workers")}
    for e in growth:
        for dim in e["params"]["dimensions"]:
            axes[dim].add((e["api"], e["params"][dim.removeprefix("growth-")]))
    assert axes["growth-rows"] == {(api, n) for api in ("v2", "native") for n in (1, 100)}
    assert axes["growth-models"] == {("native", 1), ("native", 2)}
    assert axes["growth-workers"] == {(api, n) for api in ("v2", "native") for n in (1, 2)}


def test_markdown_lists_every_table_entry_and_target(doc: tuple[Path, dict[str, Any]]) -> None:
    out, d = doc
    md = (out / "results.md").read_text()
    for heading in ("### 1 row per call", "### 100 rows per call", "## Scenarios", "### rows per call",
                    "### models per call", "### worker processes", "## Memory", "## Targets (issues 16 and 33)",
                    "## Interference"):  # fmt: skip
        assert heading in md
    for name in COMPARE_ROWS | {"mlp-256", "redis-fill", "shadow-log", "shadow-kafka-1"}:
        assert f"| {name} |" in md
    statuses = {t["name"]: t["status"] for t in d["targets"]}
    assert statuses["memory"] != "n/a" and statuses["log-file-native-1"] != "n/a"
    assert statuses["redis-fill-p99"] != "n/a" and statuses["native-p50-vs-echo"] != "n/a"
    assert statuses["cpu-v2-vs-mlserver"] == "n/a"  # no peers in this run
    for name in ("p99-2x-p50-v2", "p99-2x-p50-native", "shadow-kafka-p99", "interference-p99", "p50-v2-vs-before"):
        assert statuses[name] != "n/a", name  # issue 33's targets that need no peer
    phases = d["notes"]["interference"]["variants"]["defaults"]
    assert phases["off"]["p99"] and phases["on"]["p99"] and phases["on"]["big_calls_s"]["median"] > 0
    assert set(statuses.values()) <= {"met", "MISSED", "n/a"}
    machine = d["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["git_sha"] and machine["packages"]["grpcio"]
    assert set(d["settings"]["compare_rows"]) == {1, 100} and set(ALL_NAMES) > set(PEERS)


def test_plots_are_real_pngs(doc: tuple[Path, dict[str, Any]]) -> None:
    out, _ = doc
    for png in PNGS:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(out / png)
        assert image.shape[0] > 200 and image.shape[1] > 400
