"""Alert rules, their promtool unit tests and the Grafana dashboard, checked offline: promtool validates the
rules, the config and every dashboard query; metric and label names must be ones sibyl exports."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase

from sibyl.monitor.export import metric_families as monitor_metric_families
from sibyl.observability.metrics import Metrics
from sibyl.observability.thread_cpu import ThreadCpuCollector
from tests.support.needs import missing
from tests.support.servers import MissingBinaryError, promtool_path

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules" / "sibyl.yml"
RULE_TESTS = PROM / "tests" / "sibyl_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "sibyl.json"
DS_REF = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
ROWS = {
    "Overview", "Traffic & errors", "Latency", "Features", "Models", "Prediction log", "Drift",
    "Shadows and arms vs primary", "Primary output by slice", "Quality by model and slice", "Streams and big requests",
    "Feature freshness", "Process",
}  # fmt: skip
SCRAPE_LABELS = {"instance", "job", "le"}  # added by Prometheus or the histogram itself
NOT_SIBYL = {"up"}  # Prometheus' own series the rules/dashboard may use
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return promtool_path()
    except MissingBinaryError as exc:
        missing(exc)


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def alert_rules() -> list[Doc]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}


def dashboard() -> Doc:
    return dict(json.loads(DASHBOARD.read_text()))


def all_panels(panels: list[Doc]) -> Iterator[Doc]:
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))  # a collapsed row keeps its panels inside


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in all_panels(dashboard()["panels"]) for t in p.get("targets", [])]


def substitute(expr: str, values: dict[str, str] = GRAFANA_VARS, var_value: str = ".*") -> str:
    """Grafana's variables replaced as Grafana would for "All": built-ins get durations, $var gets the regex."""
    for name, value in values.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?\w+\}?", var_value, expr)


# ---- metric-name vocabulary


def sibyl_metrics() -> dict[str, set[str]]:
    """Exported series name -> its label names, from a fresh Metrics() registry."""
    metrics = Metrics()
    labels = {
        w._name: set(w._labelnames)  # collect() shows labels only once a child exists
        for w in vars(metrics).values()
        if isinstance(w, MetricWrapperBase)
    }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for suffix in suffixes[family.type]:
            out[family.name + suffix] = labels[family.name]
    # The per-process collectors `sibyl serve` adds to its registry (api/server.py): CPU by thread, process_*.
    per_process = CollectorRegistry()
    ThreadCpuCollector(per_process)
    ProcessCollector(registry=per_process)
    for family in per_process.collect():
        for sample in family.samples:
            out[sample.name] = set(sample.labels)
    return out | monitor_metric_families()  # sibyl monitor's own /metrics


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def names_in(expr: str) -> set[str]:
    """Series names: identifiers that start with sibyl_ or process_ or hold a colon (recording rules), outside
    strings."""
    text = strip_strings(expr)
    tokens = set(re.findall(r"(?<![\w:])([a-zA-Z_][\w]*(?::[\w]+)+|(?:sibyl|process)_\w+|up)(?![\w(])", text))
    return {t for t in tokens if not re.fullmatch(r"\d+[smhdwy]", t)}


def selector_labels(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric, label names in its {…} matcher) for each `metric{…}` in the expression."""
    for metric, body in re.findall(r"((?:sibyl|process)_\w+)\{([^}]*)\}", strip_strings(expr)):
        yield metric, set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", body))


def grouping_labels(expr: str) -> set[str]:
    lists = re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", strip_strings(expr))
    return {name.strip() for names in lists for name in names.split(",") if name.strip()}


# ---- rules


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid_and_loads_the_rules(promtool: str) -> None:
    result = run([promtool, "check", "config", "prometheus.yml"], cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = len(list((PROM / "rules").glob("*.yml")))
    assert f"{rule_files} rule files found" in result.stdout, result.stdout  # the relative rules/*.yml glob matched
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["sibyl"]["static_configs"][0]["targets"][0].endswith(":9100")


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    rules = alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        notes = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert len(notes.get(key, "")) > 20, f"{rule['alert']}: annotation {key!r} missing or too short"


def test_every_alert_fires_in_one_unit_test_and_stays_quiet_in_another() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_rules_use_only_exported_metrics_and_labels() -> None:
    check_names_and_labels(
        [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]], "rules"
    )


def check_names_and_labels(exprs: list[str], where: str) -> None:
    exported, recorded = sibyl_metrics(), recorded_names()
    every_label = set().union(*exported.values()) | SCRAPE_LABELS
    for expr in exprs:
        for name in names_in(expr):
            assert name in exported or name in recorded or name in NOT_SIBYL, f"{where}: unknown series {name!r}"
        for metric, labels in selector_labels(expr):
            assert labels <= exported[metric] | SCRAPE_LABELS, f"{where}: {metric} has no label {labels}: {expr}"
        unknown = grouping_labels(expr) - every_label
        assert not unknown, f"{where}: grouping by labels no sibyl metric has: {unknown} in {expr}"


def test_name_checker_catches_typos() -> None:
    with pytest.raises(AssertionError, match="unknown series"):
        check_names_and_labels(["rate(sibyl_request_total[5m])"], "probe")
    with pytest.raises(AssertionError, match="no label"):
        check_names_and_labels(['sibyl_requests_total{model="x"}'], "probe")
    with pytest.raises(AssertionError, match="grouping"):
        check_names_and_labels(["sum by (predictr) (sibyl_requests_total)"], "probe")


# ---- dashboard


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_uses_only_exported_metrics_and_labels() -> None:
    check_names_and_labels([substitute(e) for e in dashboard_exprs()], "dashboard")


def test_dashboard_is_provisioning_ready() -> None:
    board = dashboard()
    assert board["uid"] == "sibyl-overview" and board["title"]
    assert "id" not in board or board["id"] is None  # Grafana assigns ids; a fixed one collides on import
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("predictor", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["definition"].startswith("label_values(")
        assert variables[name]["datasource"] == DS_REF
    panels = list(all_panels(board["panels"]))
    assert {p["title"] for p in panels if p["type"] == "row"} == ROWS
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"] == DS_REF, f"panel {p['title']!r} must use the ${{DS_PROMETHEUS}} variable"
        assert p["targets"] and all(t["datasource"] == DS_REF for t in p["targets"]), p["title"]
        assert p.get("description"), f"panel {p['title']!r} needs a description for on-call"


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in all_panels(dashboard()["panels"]):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_rates_use_rate_interval() -> None:
    """A fixed window like [5m] hides spikes at short zooms and goes blank when scrapes are sparse."""
    for expr in dashboard_exprs():
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in {"$__rate_interval", "$__range"}, f"fixed range [{window}] in {expr}"


def test_dashboard_covers_every_metric() -> None:
    used = {n for e in dashboard_exprs() for n in names_in(substitute(e))}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    exported = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in sibyl_metrics()}
    assert exported - families == set(), "metrics no panel shows"
