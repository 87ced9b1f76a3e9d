"""BinaryStats and RegressionStats give exactly what binary.py gives on the concatenated rows (to 1e-12), whatever
the order and grouping of adds and merges, and survive to_bytes / from_bytes unchanged."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sibyl.errors import InvalidArgument
from sibyl.quality import binary, compare
from sibyl.quality.stats import BINARY_FORMAT, MIN_PENDING, BinaryStats, RegressionStats
from tests.quality.cases import CASES, Case

TOL = 1e-12


def _stats(y: np.ndarray, s: np.ndarray, w: np.ndarray | None, bins: int = 10) -> BinaryStats:
    out = BinaryStats(bins)
    out.add(y, s, w)
    return out


def assert_same_metrics(stats: BinaryStats, y: np.ndarray, s: np.ndarray, w: np.ndarray | None) -> None:
    """stats' metrics equal binary.py's on these rows, scores rounded to float32 (what the log stores)."""
    s32 = np.asarray(s).astype(np.float32)
    assert stats.n == len(y)
    for got, expected in (
        (stats.auc(), binary.auc(y, s32, w)),
        (stats.log_loss(), binary.log_loss(y, s32, w)),
        (stats.brier(), binary.brier(y, s32, w)),
        (stats.ece(), binary.ece(y, s32, w, bins=stats.bins)),
    ):
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected, abs=TOL, rel=0)
    weights = np.ones(len(y)) if w is None else np.asarray(w)
    if weights.sum() > 0:
        assert stats.label_rate() == pytest.approx(np.dot(weights, y) / weights.sum(), abs=TOL, rel=0)
    cal, expected_cal = stats.calibration(), binary.calibration(y, s32, w, bins=stats.bins)
    assert cal.count.tolist() == expected_cal.count.tolist()
    np.testing.assert_allclose(cal.weight, expected_cal.weight, rtol=TOL)  # sums: relative
    np.testing.assert_allclose(cal.predicted, expected_cal.predicted, atol=TOL, rtol=0)
    np.testing.assert_allclose(cal.observed, expected_cal.observed, atol=TOL, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_one_shot_stats_equal_binary_metrics(case: Case) -> None:
    assert_same_metrics(_stats(case.y, case.s, case.w), case.y, case.s, case.w)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_stats_merged_in_any_order_equal_one_shot(case: Case) -> None:
    rng = np.random.default_rng(len(case.name))
    rows = case.y.size
    cuts = np.sort(rng.choice(np.arange(1, rows), size=min(7, rows - 1), replace=False)) if rows > 1 else []
    parts = [
        _stats(case.y[a:b], case.s[a:b], None if case.w is None else case.w[a:b])
        for a, b in zip([0, *cuts], [*cuts, rows], strict=True)
    ]
    for _ in range(3):
        order = rng.permutation(len(parts))
        left = parts[order[0]]
        for i in order[1:]:  # left fold in a random order
            left = left.merge(parts[i])
        assert_same_metrics(left, case.y, case.s, case.w)
        # a balanced tree of merges
        level = [parts[i] for i in order]
        while len(level) > 1:
            level = [level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        assert_same_metrics(level[0], case.y, case.s, case.w)
        assert_same_metrics(BinaryStats.combine([level[0]]), case.y, case.s, case.w)  # a copy
    assert_same_metrics(BinaryStats.combine(parts), case.y, case.s, case.w)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=8),
    distinct=st.sampled_from([3, 50, 10_000]),
    weighted=st.booleans(),
)
def test_merge_is_associative_and_commutative(seed: int, sizes: list[int], distinct: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    rows = sum(sizes)
    y = rng.integers(0, 2, rows)
    s = rng.integers(0, distinct, rows) / (distinct - 1)
    w = rng.random(rows) if weighted else None
    bounds = np.cumsum([0, *sizes])
    parts = [_stats(y[a:b], s[a:b], None if w is None else w[a:b]) for a, b in itertools.pairwise(bounds)]
    forward = parts[0]
    for p in parts[1:]:
        forward = forward.merge(p)
    backward = parts[-1]
    for p in reversed(parts[:-1]):
        backward = p.merge(backward)
    for merged in (forward, backward, BinaryStats.combine(reversed(parts))):
        assert_same_metrics(merged, y, s, w)
        assert merged.distinct == np.unique(s.astype(np.float32)).size


def test_many_small_adds_fold_into_the_sorted_arrays() -> None:
    """Adds past the pending buffer's limit fold in; the state equals one add of everything."""
    rng = np.random.default_rng(11)
    rows = 5 * MIN_PENDING + 17
    y = rng.integers(0, 2, rows)
    s = rng.random(rows)
    w = rng.random(rows)
    stats = BinaryStats()
    for start in range(0, rows, 333):
        stats.add(y[start : start + 333], s[start : start + 333], w[start : start + 333])
    assert_same_metrics(stats, y, s, w)
    one_shot = _stats(y, s, w)
    scores, positive, negative = stats.masses()
    expected = one_shot.masses()
    assert scores.tolist() == expected[0].tolist()
    np.testing.assert_allclose(positive, expected[1], rtol=TOL)
    np.testing.assert_allclose(negative, expected[2], rtol=TOL)


def test_scores_key_on_their_float32_value() -> None:
    stats = BinaryStats()
    stats.add([1, 0, 1, 0], [0.1, np.float32(0.1), 0.1 + 1e-12, -0.0])
    stats.add([1], [0.0])
    scores, positive, negative = stats.masses()
    assert scores.dtype == np.float32
    assert scores.tolist() == [0.0, np.float32(0.1)]  # -0.0 and 0.0 one key; 0.1 and 0.1 + 1e-12 one key
    assert positive.tolist() == [1.0, 2.0] and negative.tolist() == [1.0, 1.0]
    assert stats.distinct == 2


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bytes_round_trip(case: Case) -> None:
    stats = _stats(case.y, case.s, case.w, bins=7)
    data = stats.to_bytes()
    back = BinaryStats.from_bytes(data)
    assert data[0] == BINARY_FORMAT
    assert back.to_bytes() == data
    assert back.bins == 7 and back.n == stats.n and back.weight == stats.weight
    for name in ("auc", "log_loss", "brier", "ece", "label_rate", "auc_se"):
        assert getattr(back, name)() == getattr(stats, name)()
    assert_same_metrics(back, case.y, case.s, case.w)
    assert_same_metrics(back.merge(BinaryStats(7)), case.y, case.s, case.w)


@pytest.mark.parametrize(
    ("weights", "repeat", "per_score"),
    [
        ("unit", 1, 4 + 2 * 1),  # counts fit a byte each
        ("unit", 700, 4 + 2 * 2),  # counts past 255: two bytes
        ("whole", 1, 4 + 2 * 4),  # whole weights past 65,535: four bytes
        ("fractional", 1, 4 + 2 * 8),  # float64
    ],
)
def test_bytes_per_distinct_score(weights: str, repeat: int, per_score: int) -> None:
    rng = np.random.default_rng(5)
    scores = np.repeat(np.arange(1000) / 999.0, repeat)
    y = rng.integers(0, 2, scores.size)
    w = {"unit": None, "whole": np.full(scores.size, 70_000.0), "fractional": rng.random(scores.size)}[weights]
    stats = _stats(y, scores, w)
    empty = len(BinaryStats().to_bytes())
    assert len(stats.to_bytes()) == empty + 1000 * per_score
    assert stats.nbytes == 1000 * 20 + 10 * 32


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b"\x02" + b[1:],  # a future version
        lambda b: b[:-1],  # truncated
        lambda b: b + b"\x00",  # trailing bytes
        lambda b: b[:1] + b"\x09" + b[2:],  # unknown mass code
        lambda b: b"",
    ],
)
def test_from_bytes_refuses_what_to_bytes_did_not_write(damage: object) -> None:
    stats = _stats(np.array([0, 1, 1]), np.array([0.2, 0.4, 0.9]), None)
    with pytest.raises(InvalidArgument):
        BinaryStats.from_bytes(damage(stats.to_bytes()))  # type: ignore[operator]
    with pytest.raises(InvalidArgument):
        BinaryStats.from_bytes(RegressionStats().to_bytes())


def test_unsorted_scores_in_bytes_are_refused() -> None:
    data = bytearray(_stats(np.array([0, 1]), np.array([0.2, 0.4]), None).to_bytes())
    at = len(data) - 2 * 2 - 2 * 4  # the two float32 scores, before two one-byte masses of each label
    data[at : at + 8] = np.array([0.4, 0.2], dtype="<f4").tobytes()
    with pytest.raises(InvalidArgument, match="sorted"):
        BinaryStats.from_bytes(bytes(data))


def test_stats_of_different_bins_do_not_merge() -> None:
    with pytest.raises(InvalidArgument, match="bins"):
        BinaryStats(10).merge(BinaryStats(20))
    with pytest.raises(InvalidArgument, match="bins"):
        BinaryStats.combine([BinaryStats(20), BinaryStats(10)])
    assert BinaryStats.combine([BinaryStats(20), BinaryStats(20)]).bins == 20
    assert BinaryStats.combine([]).bins == 10


@pytest.mark.parametrize("case", [c for c in CASES if c.w is None], ids=repr)
def test_auc_se_is_delongs(case: Case) -> None:
    stats = _stats(case.y, case.s, None)
    result = compare.delong(case.y, case.s.astype(np.float32), case.s.astype(np.float32))
    if result is None:
        assert stats.auc_se() is None
    else:
        assert stats.auc_se() == pytest.approx(result.se_a, abs=TOL, rel=0)


def test_an_empty_stats_measures_nothing() -> None:
    stats = BinaryStats()
    stats.add([], [])
    assert stats.n == 0 and stats.distinct == 0
    assert stats.auc() is None and stats.log_loss() is None and stats.ece() is None and stats.label_rate() is None
    assert BinaryStats.from_bytes(stats.to_bytes()).n == 0


def test_regression_stats_equal_the_metrics_in_any_order() -> None:
    rng = np.random.default_rng(9)
    y = rng.normal(0, 5, 900)
    y_hat = y + rng.normal(0.3, 1.0, 900)
    w = rng.random(900)
    parts = []
    for start in range(0, 900, 200):
        part = RegressionStats()
        part.add(y[start : start + 200], y_hat[start : start + 200], w[start : start + 200])
        parts.append(part)
    merged = parts[3].merge(parts[0]).merge(parts[4].merge(parts[2])).merge(parts[1])
    back = RegressionStats.from_bytes(merged.to_bytes())
    for stats in (merged, back):
        assert stats.n == 900
        assert stats.mae() == pytest.approx(binary.mae(y, y_hat, w), abs=TOL, rel=0)
        assert stats.rmse() == pytest.approx(binary.rmse(y, y_hat, w), abs=TOL, rel=0)
        assert stats.bias() == pytest.approx(np.dot(w, y_hat - y) / w.sum(), abs=TOL, rel=0)
    assert RegressionStats().mae() is None
    with pytest.raises(InvalidArgument):
        RegressionStats.from_bytes(merged.to_bytes()[:-1])


def test_negative_or_nan_masses_in_bytes_are_refused() -> None:
    data = _stats(np.array([0, 1]), np.array([0.2, 0.4]), np.array([0.5, 0.25])).to_bytes()  # float64 masses
    for bad in (-1.0, np.nan):
        damaged = data[:-8] + np.array([bad], dtype="<f8").tobytes()
        with pytest.raises(InvalidArgument, match="masses"):
            BinaryStats.from_bytes(damaged)
