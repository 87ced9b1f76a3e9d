"""compare.py: DeLong's AUCs equal sklearn's, its standard error equals a straightforward O(n^2) implementation, and
its interval covers the true difference at about the nominal rate; the paired loss difference equals a hand
computation; the verdict follows its rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from sibyl.errors import InvalidArgument
from sibyl.quality import binary, compare
from tests.quality.cases import CASES, Case

TOL = 1e-9


def delong_reference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong et al. (1988) written out: psi over every (positive, negative) pair. (auc_a, auc_b, se of a - b)."""
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    v10, v01, aucs = [], [], []
    for s in (a, b):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)  # m x n
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s10 = np.cov(np.array(v10))
    s01 = np.cov(np.array(v01))
    contrast = np.array([1.0, -1.0])
    variance = contrast @ (s10 / m + s01 / n) @ contrast
    return aucs[0], aucs[1], math.sqrt(max(variance, 0.0))


@pytest.mark.parametrize("case", [c for c in CASES if c.w is None], ids=repr)
def test_delong_equals_sklearn_and_the_quadratic_reference(case: Case) -> None:
    rng = np.random.default_rng(1)
    other = np.clip(np.asarray(case.s, dtype=np.float64) + rng.normal(0, 0.15, case.y.size), 0, 1)
    other = np.round(other, 2)  # ties within b and across a and b
    result = compare.delong(case.y, case.s, other)
    if min((case.y == 1).sum(), (case.y == 0).sum()) < 2:
        assert result is None
        return
    assert result is not None
    assert result.auc_a == pytest.approx(roc_auc_score(case.y, case.s), abs=TOL)
    assert result.auc_b == pytest.approx(roc_auc_score(case.y, other), abs=TOL)
    auc_a, auc_b, se = delong_reference(case.y, case.s, other)
    assert (result.auc_a, result.auc_b) == pytest.approx((auc_a, auc_b), abs=1e-12)
    assert result.se == pytest.approx(se, abs=1e-12)
    assert result.difference == pytest.approx(auc_a - auc_b, abs=1e-12)
    low, high = result.ci
    assert (high - low) / 2 == pytest.approx(scipy_stats.norm.ppf(0.975) * se, abs=1e-12)
    if se > 0:
        assert result.p_value == pytest.approx(2 * scipy_stats.norm.sf(abs(result.difference) / se), abs=1e-12)
    assert (result.positives, result.negatives, result.n) == ((case.y == 1).sum(), (case.y == 0).sum(), case.y.size)


def test_delong_of_a_model_against_itself_finds_nothing() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.8, 0.3, 0.35, 0.9, 0.5])
    result = compare.delong(y, s, s)
    assert result is not None
    assert result.difference == 0.0 and result.se == 0.0 and result.ci == (0.0, 0.0) and result.p_value == 1.0
    assert compare.verdict(result.ci, higher_is_better=True, min_rows=1, n=result.n) == "not enough evidence"
    assert compare.delong([0, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) is None  # one negative: no variance


def _binormal(rng: np.random.Generator, n: int, mu_a: float, mu_b: float, rho: float) -> tuple[np.ndarray, ...]:
    """Scores N(mu * y, 1) for each model, correlated rho within a row: AUC = Phi(mu / sqrt 2) exactly."""
    y = (rng.random(n) < 0.3).astype(np.int64)
    noise = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return y, mu_a * y + noise[:, 0], mu_b * y + noise[:, 1]


def test_delong_interval_covers_the_true_difference_at_about_95_percent() -> None:
    rng = np.random.default_rng(20261206)
    mu_a, mu_b = 1.2, 0.9
    truth = scipy_stats.norm.cdf(mu_a / math.sqrt(2)) - scipy_stats.norm.cdf(mu_b / math.sqrt(2))
    runs, covered = 600, 0
    for _ in range(runs):
        y, a, b = _binormal(rng, 300, mu_a, mu_b, rho=0.6)
        result = compare.delong(y, a, b)
        assert result is not None
        covered += result.ci[0] <= truth <= result.ci[1]
    # 95% of 600 is 570, binomial sd ~5.3: the band is about +-3.5 sd
    assert 0.92 <= covered / runs <= 0.98, covered


def test_paired_loss_diff_equals_a_hand_computation() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 400)
    p_a = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 400), 0, 1)
    p_b = np.clip(0.5 + 0.1 * (y - 0.5) + rng.normal(0, 0.2, 400), 0, 1)
    eps = np.finfo(np.float64).eps
    for kind, loss in (
        (
            "log_loss",
            lambda p: -(y * np.log(np.clip(p, eps, 1 - eps)) + (1 - y) * np.log(1 - np.clip(p, eps, 1 - eps))),
        ),
        ("brier", lambda p: (y - p) ** 2),
    ):
        d = loss(p_a) - loss(p_b)
        result = compare.paired_loss_diff(y, p_a, p_b, kind=kind)
        assert result is not None
        assert result.difference == pytest.approx(d.mean(), abs=1e-12)
        assert result.se == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), abs=1e-12)
        assert result.ci == pytest.approx(
            (d.mean() - 1.959963984540054 * result.se, d.mean() + 1.959963984540054 * result.se)
        )
        metric = binary.log_loss if kind == "log_loss" else binary.brier
        assert (result.loss_a, result.loss_b) == pytest.approx((metric(y, p_a), metric(y, p_b)), abs=1e-12)
        assert compare.verdict(result.ci, higher_is_better=False, min_rows=100, n=result.n) == "better"
        assert compare.verdict(result.ci, higher_is_better=False, min_rows=1000, n=result.n) == "not enough evidence"


def test_weighted_paired_loss_diff_uses_the_sandwich_variance() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 300)
    p_a, p_b = rng.random(300), rng.random(300)
    w = np.where(rng.random(300) < 0.2, 0.0, rng.gamma(2.0, 1.0, 300))
    result = compare.paired_loss_diff(y, p_a, p_b, kind="brier", w=w)
    assert result is not None
    d = (y - p_a) ** 2 - (y - p_b) ** 2
    mean = np.dot(w, d) / w.sum()
    k = np.count_nonzero(w)
    assert result.n == k
    assert result.difference == pytest.approx(mean, abs=1e-12)
    assert result.se == pytest.approx(math.sqrt(k / (k - 1) * np.sum(w**2 * (d - mean) ** 2)) / w.sum(), abs=1e-12)
    assert result.loss_a == pytest.approx(binary.brier(y, p_a, w), abs=1e-12)


def test_paired_loss_diff_refuses_an_unknown_kind_and_measures_nothing_on_one_row() -> None:
    with pytest.raises(InvalidArgument, match="kind"):
        compare.paired_loss_diff([0, 1], [0.2, 0.4], [0.3, 0.5], kind="hinge")  # type: ignore[arg-type]
    assert compare.paired_loss_diff([1], [0.2], [0.3]) is None
    assert compare.paired_loss_diff([0, 1], [0.2, 0.4], [0.3, 0.5], w=[0.0, 1.0]) is None


@pytest.mark.parametrize(
    ("ci", "higher_is_better", "min_rows", "n", "expected"),
    [
        ((0.01, 0.03), True, 100, 100, "better"),
        ((0.01, 0.03), False, 100, 100, "worse"),
        ((-0.03, -0.01), True, 100, 100, "worse"),
        ((-0.03, -0.01), False, 100, 100, "better"),
        ((-0.01, 0.03), True, 100, 100_000, "not enough evidence"),
        ((0.0, 0.03), True, 100, 100, "not enough evidence"),  # touching 0 does not exclude it
        ((0.01, 0.03), True, 100, 99, "not enough evidence"),  # too few rows
        ((math.nan, math.nan), True, 0, 100, "not enough evidence"),
    ],
)
def test_verdict_rule(ci: tuple[float, float], higher_is_better: bool, min_rows: int, n: int, expected: str) -> None:
    assert compare.verdict(ci, higher_is_better, min_rows, n) == expected


def test_a_better_model_is_found_better_on_enough_rows() -> None:
    rng = np.random.default_rng(2)
    y, a, b = _binormal(rng, 5000, 1.4, 0.8, rho=0.5)
    result = compare.delong(y, a, b)
    assert result is not None and result.difference > 0
    assert compare.verdict(result.ci, higher_is_better=True, min_rows=1000, n=result.n) == "better"
    flipped = compare.delong(y, b, a)
    assert flipped is not None
    assert compare.verdict(flipped.ci, higher_is_better=True, min_rows=1000, n=flipped.n) == "worse"
    assert compare.delong(y, a, b, confidence=0.99).ci[0] < result.ci[0]  # type: ignore[union-attr]
