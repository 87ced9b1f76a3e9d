"""The report's arithmetic: medians with their spread, per-call CPU targets (met / MISSED / n/a), perf_analyzer's
CSV, the growth points. Synthetic entries: no server, no timing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.load.perf_analyzer import input_data, parse_csv
from benchmarks.report import document, tail_targets, targets
from benchmarks.report.results import figure, spread
from benchmarks.scenarios.growth import points
from sibyl.v1.predict_pb2 import PredictRequest

CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "8,26969,33,7311,0,0,0,0,2,4066,15281,18591,39109\n"
)


def entry(name: str, rows: int, cpu: float, p50: float = 1.0, **extra: Any) -> dict[str, Any]:
    closed = {
        c: {"runs": [], "server_cpu_us_per_call": {"median": cpu, "min": cpu * 0.9, "max": cpu * 1.1},
            "p50_ms": {"median": p50, "min": p50, "max": p50}}
        for c in ("1", "8")
    }  # fmt: skip
    return {"name": name, "label": name, "rows": rows, "client": "python", "section": "compare", "kind": "sibyl",
            "api": "v2", "closed": closed, **extra}  # fmt: skip


def test_spread_is_median_min_max_of_what_exists() -> None:
    assert spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([None]) is None
    e = entry("x", 1, 100.0)
    assert figure(e, "closed.8", "server_cpu_us_per_call") == 100.0
    assert figure(e, "closed.8", "server_cpu_us_per_call", "max") == pytest.approx(110.0)
    assert figure(e, "closed.2", "server_cpu_us_per_call") is None and figure({"skipped": "x"}, "closed.8", "p") is None


def by_name(result: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in result}


def test_cpu_targets_against_mlserver_and_the_log_off() -> None:
    entries = [
        entry("mlserver-v2", 1, 1000.0),
        entry("mlserver-v2", 100, 2000.0),
        entry("sibyl-v2", 1, 500.0),  # 0.5 x: met
        entry("sibyl-native", 1, 700.0, p50=2.0),  # 0.7 x: missed
        entry("echo-native", 1, 400.0, p50=1.0),
        entry("sibyl-v2", 100, 600.0),  # 166,667 rows/s vs 3 x 50,000: met
        entry("sibyl-native-nolog", 1, 600.0),  # the file log adds 16.7 %: met
        entry("sibyl-native-kafka", 1, 800.0),  # Kafka adds 33 %: missed
        {"name": "redis-fill", "rows": 100, "client": "python", "skipped": "server did not start"},
    ]
    t = by_name(targets.evaluate(entries, {"memory": {"model_bytes": 2**20, "processes": [{"rss_bytes": 2**27}]}}))
    assert t["cpu-v2-vs-mlserver"]["status"] == "met" and t["cpu-v2-vs-mlserver"]["limit"] == 600
    assert t["cpu-native-vs-mlserver"]["status"] == "MISSED"
    assert t["native-p50-vs-echo"]["status"] == "MISSED"  # 2.0 ms > 1.5 x 1.0 ms
    assert t["rows-per-cpu-s-100"]["status"] == "met"
    assert t["log-file-native-1"]["status"] == "met" and t["log-kafka-native-1"]["status"] == "MISSED"
    assert t["log-file-v2-1"]["status"] == "n/a" and "sibyl-v2-nolog" in t["log-file-v2-1"]["detail"]
    assert t["redis-fill-p99"]["status"] == "n/a"  # skipped entries count as missing
    assert t["memory"]["status"] == "met"  # 128 MB <= 1.5 MB + 150 MB
    assert {x["status"] for x in t.values()} <= {"met", "MISSED", "n/a"}


def test_comparison_table_has_one_line_per_measured_row() -> None:
    entries = [entry("echo-v2", 1, 300.0), entry("sibyl-v2", 1, 800.0), {**entry("x", 1, 1.0), "skipped": "why"}]
    lines = document.comparison(entries, 1, 10.0)
    header, rule = lines[2], lines[3]
    assert header.count("|") == rule.count("|")
    assert any(line.startswith("| sibyl-v2 | sibyl | v2 |") and "800 (720-880)" in line for line in lines)
    assert "| x | skipped: why |" in lines


def test_perf_analyzer_csv_and_input_data() -> None:
    got = parse_csv(CSV, batch=100)
    assert got == {"requests_per_s": pytest.approx(269.69), "p50_ms": 4.066, "p90_ms": 15.281, "p99_ms": 39.109}
    with pytest.raises(ValueError, match="no result row"):
        parse_csv(CSV.splitlines()[0] + "\n", batch=1)
    data = json.loads(input_data({"input": [1.0, 2.0]}))
    assert data == {"data": [{"input": {"content": [1.0, 2.0], "shape": [2]}}]}


def test_growth_points_are_shared_between_tables() -> None:
    got = points(["growth-rows", "growth-models", "growth-workers"], (1, 100), (1, 2), (1, 2))
    assert len(got) == len(set(got)) == 2 * 2 + 1 + 2  # rows x api, one more model, 2 workers x api
    base = next(p for p in got if (p.api, p.rows, p.models, p.workers) == ("native", 1, 1, 1))
    assert base.dimensions() == ["growth-rows", "growth-models", "growth-workers"]
    assert [p.workers for p in got] == sorted(p.workers for p in got)  # one server per worker count
    three = points(["growth-models"], (1,), (1, 3), (1,))[-1]
    assert list(PredictRequest.FromString(three.payload()).extra_models) == ["gbdt@2", "gbdt@3"]


def tail_entry(name: str, p50: float, p99: float, p999: float, cpu: float = 500.0) -> dict[str, Any]:
    runs = {"p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "server_cpu_us_per_call": cpu}
    closed = {c: {k: {"median": v, "min": v, "max": v} for k, v in runs.items()} for c in ("1", "8")}
    return {"name": name, "label": name, "rows": 1, "client": "python", "section": "compare", "closed": closed}


def test_tail_targets_against_mlserver_the_median_the_log_off_interference_and_before() -> None:
    entries = [
        tail_entry("mlserver-v2", 0.8, 1.0, 2.0),
        tail_entry("sibyl-v2", 0.5, 0.79, 2.0, cpu=420.0),  # p99 0.79 <= 0.8: met; p99.9 2.0 > 1.6: missed
        tail_entry("sibyl-native", 0.5, 1.1, 1.5, cpu=500.0),  # 1.1 > 2 x 0.5: missed
        tail_entry("echo-v2", 0.25, 0.5, 0.6, cpu=200.0),
        tail_entry("echo-native", 0.25, 0.5, 0.6, cpu=200.0),
        tail_entry("sibyl-native-nolog", 0.5, 1.0, 1.5),
        tail_entry("shadow-kafka-1", 0.6, 1.12, 2.0),  # 1.12 > 1.1 x 1.0: missed
    ]
    interference = {"variants": {"defaults": {"on": {"p99": {"median": 9.5, "min": 8.0, "max": 12.0}}}}}
    before = [tail_entry("sibyl-v2", 0.5, 2.0, 3.0, cpu=400.0), tail_entry("echo-v2", 0.25, 0.5, 0.6, cpu=200.0)]
    got = by_name(tail_targets.evaluate(entries, {"interference": interference}, before))
    assert got["grpc-p99-c1"]["status"] == "met" and got["grpc-p99-c1"]["limit"] == 0.8
    assert got["grpc-p99.9-c8"]["status"] == "MISSED"
    assert got["p99-2x-p50-v2"]["status"] == "met" and got["p99-2x-p50-native"]["status"] == "MISSED"
    assert got["shadow-kafka-p99"]["status"] == "MISSED" and got["shadow-kafka-p99"]["limit"] == 1.1
    assert got["interference-p99"]["status"] == "met" and got["interference-p99"]["value"] == 9.5
    # CPU 420/200 = 2.1 x echo now, 400/200 = 2.0 before: 2.1 <= 1.05 x 2.0 (met); p50 2.0 x echo both times: met
    assert got["cpu-v2-vs-before"]["status"] == "met" and got["cpu-v2-vs-before"]["value"] == 2.1
    assert got["p50-v2-vs-before"]["status"] == "met"
    assert got["cpu-native-vs-before"]["status"] == "n/a"  # the baseline has no native rows
    none = by_name(tail_targets.evaluate([], {}, None))
    assert {t["status"] for t in none.values()} == {"n/a"}
    assert tail_targets.load_baseline() is not None  # the file the full run compares with is in the repo
