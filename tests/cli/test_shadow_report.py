"""`sibyl models shadow-report`'s arithmetic on a metrics page built here (tests/observability/test_verdicts_live.py
runs it against a real server)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sibyl.cli.main import main
from sibyl.cli.shadow_report import _slice_order, metrics_url, quantile, report, table
from sibyl.errors import InvalidArgument
from sibyl.observability.metrics import Metrics
from tests.cli.error_line import one_error


def page() -> tuple[str, np.ndarray]:
    metrics = Metrics(CollectorRegistry())
    rng = np.random.default_rng(1)
    delta = rng.exponential(0.02, 2_000)
    child = metrics.shadow_abs_delta.labels("p", "cand", "2", "shadow", "all")
    for d in delta:
        child.observe(d)
    metrics.shadow_decisions.labels("p", "cand", "2", "shadow", "all", "agree").inc(1_900)
    metrics.shadow_decisions.labels("p", "cand", "2", "shadow", "all", "disagree").inc(100)
    metrics.shadow_decisions.labels("other", "x", "1", "shadow", "all", "agree").inc(5)
    metrics.shadow_rank_agreement.labels("p", "cand", "2", "all").set(0.93)
    metrics.decisions.labels("p", "prim", "1", "all", "positive").inc(300)
    metrics.decisions.labels("p", "prim", "1", "all", "negative").inc(1_700)
    return generate_latest(metrics.registry).decode(), delta


def test_report_reads_one_predictors_series() -> None:
    text, delta = page()
    result = report(text, "p")
    (candidate,) = result["candidates"]
    (row,) = candidate["slices"]
    assert (candidate["model"], candidate["version"], candidate["role"]) == ("cand", "2", "shadow")
    assert row["rows"] == 2_000 and row["agreement"] == 0.95 and row["rank_agreement"] == 0.93
    assert row["delta_mean"] == pytest.approx(delta.mean(), rel=1e-9)
    # Interpolated within a bucket: the true quantile lies in the same bucket as the estimate.
    bounds = [0.01, 0.02, 0.05, 0.1]
    for q, key in ((0.5, "delta_p50"), (0.9, "delta_p90")):
        true = float(np.quantile(delta, q))
        assert np.searchsorted(bounds, true) == np.searchsorted(bounds, row[key])
    assert result["answering"] == [
        {"model": "prim", "version": "1", "slices": [{"slice": "all", "rows": 2_000, "positive_rate": 0.15}]}
    ]
    assert "cand@2 (shadow) vs primary of p" in table(result)


def test_quantile_matches_prometheus_interpolation() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (float("inf"), 40.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.15)  # rank 20: halfway through the (0.1, 0.2] bucket
    assert quantile(0.99, buckets) == 0.2  # in +Inf: the highest finite bound
    assert quantile(0.5, []) is None


def test_unknown_predictor_is_a_clear_error() -> None:
    text, _ = page()
    with pytest.raises(InvalidArgument, match="no verdicts for predictor 'nope'"):
        table(report(text, "nope"))


def test_targets_name_the_metrics_endpoint() -> None:
    assert metrics_url("host:9100") == "http://host:9100/metrics"
    assert metrics_url("https://h/metrics") == "https://h/metrics"


def test_an_unreachable_target_exits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "shadow-report", "example", "--target", "127.0.0.1:1"]) == 2
    assert "cannot read http://127.0.0.1:1/metrics" in one_error(capsys)


def test_slices_read_in_bin_order_with_other_last() -> None:
    labels = ["d=1-3", "d=>=10", "all", "d=<1", "d=missing", "d=3-10", "s=other", "s=42", "s=3", "s=none", "s=s1"]
    ordered = sorted(labels, key=lambda label: _slice_order({"slice": label}))
    assert ordered == ["all", "d=<1", "d=1-3", "d=3-10", "d=>=10", "d=missing", "s=3", "s=42", "s=s1", "s=none",
                       "s=other"]  # fmt: skip
