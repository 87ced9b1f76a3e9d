"""binary.py's metrics equal scikit-learn's (to 1e-9) on random and adversarial rows, and calibration / ECE equal a
hand computation; wrong inputs are refused, not measured."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    brier_score_loss,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.metrics import log_loss as sklearn_log_loss

from sibyl.errors import InvalidArgument
from sibyl.quality import binary
from tests.quality.cases import CASES, TWO_CLASS, Case

TOL = 1e-9


def _sklearn_probabilities(p: np.ndarray) -> np.ndarray:
    """What binary.py measures, for sklearn: p clipped by its own dtype's eps, then float64 (sklearn computes a
    float32 input in float32, about 1e-7 off; binary.py takes the logs in float64)."""
    eps = np.finfo(p.dtype).eps
    return np.clip(p, eps, 1 - eps).astype(np.float64)


@pytest.mark.parametrize("case", TWO_CLASS, ids=repr)
def test_auc_equals_sklearn(case: Case) -> None:
    assert binary.auc(case.y, case.s, case.w) == pytest.approx(
        roc_auc_score(case.y, case.s, sample_weight=case.w), abs=TOL
    )


@pytest.mark.parametrize("case", [c for c in CASES if not c.both_classes], ids=repr)
def test_auc_is_none_when_a_class_is_absent(case: Case) -> None:
    assert binary.auc(case.y, case.s, case.w) is None
    with warnings.catch_warnings():  # sklearn says so too: a warning and NaN (older releases: a ValueError)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        with contextlib.suppress(ValueError):
            assert np.isnan(roc_auc_score(case.y, case.s, sample_weight=case.w))


@pytest.mark.parametrize("case", [c for c in CASES if c.both_classes or c.w is None], ids=repr)
def test_log_loss_and_brier_equal_sklearn(case: Case) -> None:
    labels = [0, 1]  # sklearn needs them named when one class is absent
    expected_loss = sklearn_log_loss(case.y, _sklearn_probabilities(case.s), sample_weight=case.w, labels=labels)
    assert binary.log_loss(case.y, case.s, case.w) == pytest.approx(expected_loss, abs=TOL)
    expected_brier = brier_score_loss(case.y, case.s.astype(np.float64), sample_weight=case.w, labels=labels)
    assert binary.brier(case.y, case.s, case.w) == pytest.approx(expected_brier, abs=TOL)


def test_log_loss_clips_by_the_scores_dtype() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.0, 1.0, 1.0, 0.0])
    for dtype in (np.float64, np.float32):
        eps = np.finfo(dtype).eps
        assert binary.log_loss(y, p.astype(dtype)) == pytest.approx(-(2 * np.log(eps) + 2 * np.log1p(-eps)) / 4)
    assert binary.log_loss(y, p) == pytest.approx(sklearn_log_loss(y, p), abs=TOL)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5000001, 0.9, 1.0]),  # few values: many ties
            st.floats(0.0, 10.0),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_metrics_equal_sklearn_on_any_rows(rows: list[tuple[int, float, float]]) -> None:
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows])
    w = np.array([r[2] for r in rows])
    if w[y == 1].sum() > 0 and w[y == 0].sum() > 0:
        assert binary.auc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=TOL)
    else:
        assert binary.auc(y, s, w) is None
    if w.sum() > 0:
        expected = sklearn_log_loss(y, s, sample_weight=w, labels=[0, 1])
        assert binary.log_loss(y, s, w) == pytest.approx(expected, abs=TOL)
        assert binary.brier(y, s, w) == pytest.approx(brier_score_loss(y, s, sample_weight=w, labels=[0, 1]), abs=TOL)
    else:
        assert binary.log_loss(y, s, w) is None
        assert binary.brier(y, s, w) is None


def test_calibration_and_ece_equal_a_hand_computation() -> None:
    y = [0, 1, 0, 1, 1]
    p = [0.05, 0.15, 0.15, 0.95, 1.0]
    w = [1.0, 2.0, 1.0, 1.0, 3.0]
    cal = binary.calibration(y, p, w, bins=10)
    # bin 0: one row (p .05, y 0); bin 1: p .15 twice, weights 2 (y 1) and 1 (y 0); bin 9: .95 (w 1) and 1.0 (w 3)
    assert cal.count.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert cal.weight.tolist() == [1.0, 3.0, 0, 0, 0, 0, 0, 0, 0, 4.0]
    filled = [0, 1, 9]
    assert cal.predicted[filled] == pytest.approx([0.05, 0.15, (0.95 + 3.0) / 4])
    assert cal.observed[filled] == pytest.approx([0.0, 2 / 3, 1.0])
    assert np.isnan(cal.predicted[2:9]).all() and np.isnan(cal.observed[2:9]).all()
    expected_ece = (1 * 0.05 + 3 * (2 / 3 - 0.15) + 4 * (1.0 - 0.9875)) / 8  # = 0.20625
    assert cal.ece == pytest.approx(expected_ece, abs=1e-15)
    assert binary.ece(y, p, w) == pytest.approx(0.20625, abs=1e-15)
    assert cal.edges.tolist() == np.linspace(0, 1, 11).tolist()


@pytest.mark.parametrize("case", [c for c in CASES if c.w is None and c.both_classes], ids=repr)
@pytest.mark.parametrize("bins", [1, 5, 10, 17])
def test_calibration_equals_sklearns_calibration_curve(case: Case, bins: int) -> None:
    observed, predicted = calibration_curve(case.y, case.s, n_bins=bins, strategy="uniform")
    cal = binary.calibration(case.y, case.s, bins=bins)
    filled = cal.count > 0
    assert cal.observed[filled] == pytest.approx(observed, abs=TOL)
    assert cal.predicted[filled] == pytest.approx(predicted, abs=TOL)
    assert cal.count.sum() == case.y.size


def test_a_score_on_an_edge_falls_in_the_bin_below() -> None:
    cal = binary.calibration([0, 1, 0, 1, 1], [0.0, 0.5, 0.5000001, 0.55, 1.0])
    assert cal.count.tolist() == [1, 0, 0, 0, 1, 2, 0, 0, 0, 1]
    assert binary.ece([0, 1, 0, 1], [0.5, 0.5, 0.55, 0.55]) == pytest.approx(
        0.025
    )  # bin 4 exact, bin 5 0.05 off: half the weight
    assert binary.ece([0, 1], [0.5, 0.5]) == 0.0


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(10, 3, 500)
    y_hat = y + rng.normal(0.5, 2, 500)
    w = rng.random(500)
    assert binary.mae(y, y_hat, w) == pytest.approx(mean_absolute_error(y, y_hat, sample_weight=w), abs=TOL)
    assert binary.rmse(y, y_hat, w) == pytest.approx(root_mean_squared_error(y, y_hat, sample_weight=w), abs=TOL)
    assert binary.mae(y, y_hat) == pytest.approx(mean_absolute_error(y, y_hat), abs=TOL)


def test_no_rows_measure_nothing() -> None:
    for metric in (binary.auc, binary.log_loss, binary.brier, binary.ece, binary.mae, binary.rmse):
        assert metric([], []) is None
        assert metric([0.0, 1.0], [0.5, 0.5], [0.0, 0.0]) is None
    assert binary.calibration([], []).count.sum() == 0


@pytest.mark.parametrize(
    ("y", "s", "w", "says"),
    [
        ([0, 2], [0.1, 0.2], None, "binary labels"),
        ([0, np.nan], [0.1, 0.2], None, "binary labels"),
        ([0, 1], [0.1, np.nan], None, "finite"),
        ([0, 1], [0.1, 1.5], None, "probabilities"),
        ([0, 1], [-0.1, 0.5], None, "probabilities"),
        ([0, 1], [0.1, 0.2], [1.0, -1.0], "w must be"),
        ([0, 1], [0.1, 0.2], [1.0], "w has 1 values for 2 rows"),
        ([0, 1, 1], [0.1, 0.2], None, "one value per row"),
        ([[0, 1]], [[0.1, 0.2]], None, "1-D"),
        (["no", "yes"], [0.1, 0.2], None, "y must be numbers"),
        ([0, 1], [0.1, 0.2], ["a", "b"], "w must be numbers"),
    ],
)
def test_wrong_inputs_are_refused(y: object, s: object, w: object, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        binary.log_loss(y, s, w)  # type: ignore[arg-type]


def test_auc_takes_any_finite_scores_but_losses_want_probabilities() -> None:
    assert binary.auc([0, 1, 0, 1], [-3.0, 7.0, 2.0, 2.0]) == pytest.approx(roc_auc_score([0, 1, 0, 1], [-3, 7, 2, 2]))
    with pytest.raises(InvalidArgument):
        binary.brier([0, 1], [-3.0, 7.0])
    with pytest.raises(InvalidArgument):
        binary.calibration([0, 1], [0.5, 0.5], bins=0)
