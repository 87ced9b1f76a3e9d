"""Spearman over a sliding window (serving.rank_window) against scipy.stats.spearmanr on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sibyl.serving.rank_window import RankWindow, average_ranks, spearman


def test_average_ranks_equal_scipy_with_ties() -> None:
    values = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 1.0, 2.0])
    np.testing.assert_array_equal(average_ranks(values), stats.rankdata(values))


@pytest.mark.parametrize("seed", range(5))
def test_spearman_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random(500).round(2)  # rounded: many ties
    b = (a + rng.normal(0, 0.3, 500)).round(1)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_constant_or_tiny_windows_have_no_value() -> None:
    assert spearman(np.ones(50), np.arange(50.0)) is None
    assert spearman(np.arange(5.0), np.arange(5.0)) is None


def test_the_window_keeps_only_the_last_rows() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.random(2_500), rng.random(2_500)
    window = RankWindow(size=1_000, every_s=5.0)
    for start in range(0, 2_500, 70):  # uneven chunks wrap the ring
        window.add(a[start : start + 70], b[start : start + 70])
    assert window.filled == 1_000
    expected = stats.spearmanr(a[-1_000:], b[-1_000:]).statistic
    assert window.spearman() == pytest.approx(expected, abs=1e-12)


def test_due_when_rows_came_and_every_s_passed() -> None:
    window = RankWindow(size=10_000, every_s=5.0)
    assert not window.due(now=100.0)  # nothing added yet
    window.add(np.arange(20.0), np.arange(20.0))
    assert window.due(now=100.0)  # never refreshed
    assert window.spearman(now=100.0) == pytest.approx(1.0)
    window.add(np.arange(50.0), np.arange(50.0))
    assert not window.due(now=104.9)
    assert window.due(now=105.0)
    window.spearman(now=105.0)
    assert not window.due(now=200.0)  # no new rows: nothing to refresh
