"""The prediction-log loss alerts (deploy/prometheus/rules/sibyl-predlog-losses.yml): promtool accepts them and
their unit tests pass, and every series and reason they name is one sibyl exports (sibyl/predlog/losses.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import get_args

import pytest
import yaml

from sibyl.observability.metrics import Metrics
from sibyl.predlog.losses import Reason
from tests.support.needs import missing
from tests.support.servers import MissingBinaryError, promtool_path

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROM / "rules" / "sibyl-predlog-losses.yml"
RULE_TESTS = PROM / "tests" / "sibyl-predlog-losses_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return promtool_path()
    except MissingBinaryError as exc:
        missing(exc)


def test_promtool_checks_the_rules_and_passes_their_unit_tests(promtool: str) -> None:
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_name_exported_series_and_reasons() -> None:
    exported = {s.name for family in Metrics().registry.collect() for s in family.samples}
    exported |= {f"{family.name}_total" for family in Metrics().registry.collect() if family.type == "counter"}
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for expr in exprs:
        for name in re.findall(r"\b(sibyl_\w+)", expr):
            assert name in exported, f"{name} is not a sibyl series"
        for reason in re.findall(r'reason="(\w+)"', expr):
            assert reason in get_args(Reason), f"reason {reason!r} is not one sibyl/predlog/losses.py counts"
