"""PSI, baseline bins and the live drift monitor (gauges on an injected registry)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sibyl.errors import InvalidArgument
from sibyl.models.baseline import Binner, compute_baselines, make_edges
from sibyl.models.drift import EPSILON, PREDICTION, DriftMonitor, psi_segments
from sibyl.models.manifest import FeatureSpec, Manifest, OutputSpec
from sibyl.observability.metrics import Metrics

INPUTS = [
    FeatureSpec(name="a"),
    FeatureSpec(name="flag"),
    FeatureSpec(name="emb", dtype="float_vector", dim=2, default=(0.0, 0.0)),
]


def draw(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.column_stack([rng.normal(shift, 1.0, n), rng.random(n) < 0.3, rng.normal(0.0, 1.0, (n, 2))]).astype(
        np.float32
    )
    scores = (1 / (1 + np.exp(-matrix[:, 0]))).astype(np.float32)
    return matrix, scores


def manifest_from(matrix: np.ndarray, scores: np.ndarray) -> Manifest:
    return Manifest(
        name="m",
        version="3",
        input_name="input",
        inputs=INPUTS,
        output=OutputSpec(name="probabilities", column=1),
        sha256="0" * 64,
        baselines=compute_baselines(INPUTS, matrix, scores),
    )


@pytest.fixture
def baseline() -> tuple[Manifest, np.ndarray, np.ndarray]:
    matrix, scores = draw(np.random.default_rng(1), 5000)
    return manifest_from(matrix, scores), matrix, scores


# ---- psi
def psi(expected_counts: list[float], actual_counts: list[float]) -> float:
    """psi_segments on one histogram: what DriftMonitor exports for one feature."""
    expected, actual = np.asarray(expected_counts, np.float64), np.asarray(actual_counts, np.float64)
    return float(psi_segments(expected, actual, np.zeros(1, dtype=np.intp))[0])


def reference_psi(expected_counts: list[float], actual_counts: list[float]) -> float:
    """The oracle, written out in plain Python: sum((q - p) * ln(q / p)) of bin shares floored at EPSILON."""
    p_total, q_total = sum(expected_counts) or 1.0, sum(actual_counts) or 1.0
    total = 0.0
    for e, a in zip(expected_counts, actual_counts, strict=True):
        p, q = max(e / p_total, EPSILON), max(a / q_total, EPSILON)
        total += (q - p) * math.log(q / p)
    return total


def test_psi_of_identical_distributions_is_zero() -> None:
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-12)  # shares, not counts, matter


def test_psi_hand_computed() -> None:
    # shares .5/.5 -> .25/.75: (.25-.5)ln(.25/.5) + (.75-.5)ln(.75/.5) = .25 ln 2 + .25 ln 1.5
    by_hand = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(by_hand, rel=1e-12)
    assert reference_psi([50, 50], [25, 75]) == pytest.approx(by_hand, rel=1e-12)  # so does the oracle


def test_psi_smooths_empty_bins() -> None:
    value = psi([100, 0], [50, 50])  # p = (1, 1e-4) after smoothing
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-12)


def test_psi_rejects_mismatched_bins() -> None:
    with pytest.raises(ValueError):  # numpy refuses to pair up count arrays of different lengths
        psi([1, 2, 3], [1, 2])


def test_psi_segments_equal_one_psi_per_histogram() -> None:
    expected = np.array([50, 50, 1, 2, 3, 10.0])
    actual = np.array([25, 75, 3, 2, 1, 4.0])
    got = psi_segments(expected, actual, np.array([0, 2, 5]))
    want = [reference_psi([50, 50], [25, 75]), reference_psi([1, 2, 3], [3, 2, 1]), reference_psi([10], [4])]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---- bins
def test_binner_clips_outer_values_and_puts_nan_first() -> None:
    binner = Binner([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0], [-1.0, 1.0]])
    values = np.array(
        [[-5, 7, -9], [0, 5, 0], [0.999, 4, 1], [1, 6, 1.5], [2.5, 5, 0.2], [3, 5, 3], [99, 5, 2], [np.nan, 5, 0.0]]
    )
    counts = binner.split(binner.counts(values))
    # column 0: -5, 0, .999, nan -> bin 0; 1 -> bin 1; 2.5, 3, 99 -> bin 2 (edges[i] <= v < edges[i+1], clipped)
    assert counts[0].tolist() == [4, 1, 3]
    assert counts[1].tolist() == [8]  # one bin takes everything
    assert counts[2].tolist() == [8]


def test_binner_matches_searchsorted_on_raw_edges() -> None:
    rng = np.random.default_rng(5)
    edges = [np.sort(rng.normal(0, 1, 11)), np.sort(rng.uniform(0, 100, 6)), np.array([0.0, 0.5, 1.0])]
    values = np.column_stack([rng.normal(0, 2, 4000), rng.uniform(-20, 120, 4000), rng.integers(0, 2, 4000)])
    counts = Binner(edges).split(Binner(edges).counts(values.copy()))
    for k, e in enumerate(edges):
        want = np.bincount(np.searchsorted(e[1:-1], values[:, k], side="right"), minlength=len(e) - 1)
        assert counts[k].tolist() == want.tolist()


def test_binner_rejects_bad_edges() -> None:
    with pytest.raises(InvalidArgument, match="increasing"):
        Binner([[0.0, 2.0, 1.0]])
    with pytest.raises(InvalidArgument, match="at least 2 edges"):
        Binner([[1.0]])


def test_make_edges_quantiles_and_distinct_values() -> None:
    values = np.arange(1000, dtype=np.float64)
    edges = make_edges(values, 4)
    assert edges[0] == 0 and edges[-1] == 999 and len(edges) == 5
    assert make_edges(np.array([0.0, 1, 1, 0, 1]), 10).tolist() == [0.0, 0.5, 1.0]
    assert make_edges(np.array([2.0, 2.0]), 10).tolist() == [2.0, 2.0]


def test_baselines_bin_every_feature_and_the_prediction(baseline: tuple[Manifest, np.ndarray, np.ndarray]) -> None:
    manifest, matrix, _ = baseline
    b = manifest.baselines
    assert b is not None and b.prediction is not None
    assert set(b.features) == {"a", "flag", "emb"}
    assert [len(h.counts) for h in (b.features["a"], b.features["emb"], b.prediction)] == [10, 10, 10]
    assert b.features["flag"].edges == [0.0, 0.5, 1.0]
    assert all(sum(h.counts) == len(matrix) for h in [*b.features.values(), b.prediction])
    assert np.ptp(b.features["a"].counts) <= 1  # quantile bins: equal counts


def test_vector_features_are_binned_by_l2_norm() -> None:
    angles = np.linspace(0, 2 * np.pi, 50)
    matrix = np.column_stack([np.zeros(50), np.zeros(50), 5 * np.cos(angles), 5 * np.sin(angles)]).astype(np.float32)
    hist = compute_baselines(INPUTS, matrix, np.zeros(50)).features["emb"]
    assert hist.counts == [50.0] and hist.edges == pytest.approx([5.0, 5.0], rel=1e-6)


def test_baselines_refuse_nan_naming_the_feature() -> None:
    matrix, scores = draw(np.random.default_rng(0), 10)
    matrix[3, 1] = np.nan
    with pytest.raises(InvalidArgument, match="flag has NaN"):
        compute_baselines(INPUTS, matrix, scores)
    with pytest.raises(InvalidArgument, match="one score per row"):
        compute_baselines(INPUTS, matrix[:5], scores)


# ---- monitor
def psi_gauge(metrics: Metrics, feature: str) -> float | None:
    labels = {"model": "m", "version": "3", "feature": feature}
    return metrics.registry.get_sample_value("sibyl_drift_psi", labels)


def test_baseline_sample_itself_has_zero_psi(baseline: tuple[Manifest, np.ndarray, np.ndarray]) -> None:
    manifest, matrix, scores = baseline
    monitor = DriftMonitor(manifest, Metrics(), export_every=0)
    for chunk in range(0, len(matrix), 100):
        monitor.observe(matrix[chunk : chunk + 100], scores[chunk : chunk + 100])
    assert monitor.export() == dict.fromkeys(["a", "flag", "emb", PREDICTION], 0.0)  # same bins, same counts


def test_same_distribution_is_stable_and_a_shift_is_caught(baseline: tuple[Manifest, np.ndarray, np.ndarray]) -> None:
    manifest, _, _ = baseline
    rng = np.random.default_rng(2)
    metrics = Metrics()
    stable = DriftMonitor(manifest, metrics, export_every=0)
    stable.observe(*draw(rng, 5000))
    assert max(stable.export().values()) < 0.05

    shifted = DriftMonitor(manifest, metrics, version="shifted", export_every=0)
    shifted.observe(*draw(rng, 5000, shift=1.0))
    values = shifted.export()
    assert values["a"] > 0.2 and values[PREDICTION] > 0.2
    assert values["flag"] < 0.05 and values["emb"] < 0.05
    assert psi_gauge(metrics, "a") == pytest.approx(stable.export()["a"])
    labels = {"model": "m", "version": "shifted", "feature": "a"}
    assert metrics.registry.get_sample_value("sibyl_drift_psi", labels) == pytest.approx(values["a"])


def test_no_gauges_before_min_rows_then_every_export_every_rows(
    baseline: tuple[Manifest, np.ndarray, np.ndarray],
) -> None:
    manifest, _, _ = baseline
    metrics = Metrics()
    monitor = DriftMonitor(manifest, metrics, min_rows=300, export_every=250)
    rng = np.random.default_rng(3)
    monitor.observe(*draw(rng, 260, shift=3.0))  # export due, but below min_rows
    assert psi_gauge(metrics, "a") is None and monitor.export() == {}
    monitor.observe(*draw(rng, 260, shift=3.0))  # 520 rows: exported on its own
    first = psi_gauge(metrics, "a")
    assert first is not None and first > 1.0


def test_window_forgets_old_traffic(baseline: tuple[Manifest, np.ndarray, np.ndarray]) -> None:
    manifest, _, _ = baseline
    monitor = DriftMonitor(manifest, Metrics(), window=1000, export_every=0)
    rng = np.random.default_rng(4)
    for _ in range(10):
        monitor.observe(*draw(rng, 500, shift=2.0))
    assert monitor.export()["a"] > 1.0
    for _ in range(6):
        monitor.observe(*draw(rng, 500))
    assert monitor.rows <= 2000
    assert monitor.export()["a"] < 0.05  # the shifted rows have aged out


def test_empty_batch_and_wrong_width(baseline: tuple[Manifest, np.ndarray, np.ndarray]) -> None:
    manifest, _, _ = baseline
    monitor = DriftMonitor(manifest, Metrics())
    monitor.observe(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    assert monitor.rows == 0
    with pytest.raises(InvalidArgument, match=r"\[rows, 4\]"):
        monitor.observe(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))


def test_features_without_baseline_are_skipped_and_close_removes_gauges(
    baseline: tuple[Manifest, np.ndarray, np.ndarray],
) -> None:
    manifest, matrix, scores = baseline
    assert manifest.baselines is not None
    partial = manifest.model_copy(
        update={
            "baselines": manifest.baselines.model_copy(update={"features": {"a": manifest.baselines.features["a"]}})
        }
    )
    metrics = Metrics()
    monitor = DriftMonitor(partial, metrics, min_rows=1)
    monitor.observe(matrix, scores)
    assert set(monitor.export()) == {"a", PREDICTION}
    assert psi_gauge(metrics, "a") == 0.0 and psi_gauge(metrics, "flag") is None
    monitor.close()
    assert psi_gauge(metrics, "a") is None


def test_for_manifest_needs_baselines(baseline: tuple[Manifest, np.ndarray, np.ndarray]) -> None:
    manifest, _, _ = baseline
    bare = manifest.model_copy(update={"baselines": None})
    assert DriftMonitor.for_manifest(bare, Metrics()) is None
    assert isinstance(DriftMonitor.for_manifest(manifest, Metrics()), DriftMonitor)
    with pytest.raises(ValueError, match="--sample"):
        DriftMonitor(bare, Metrics())


def test_psi_by_slice_equals_a_monitor_fed_only_that_slices_rows(
    baseline: tuple[Manifest, np.ndarray, np.ndarray],
) -> None:
    manifest, _, _ = baseline
    rng = np.random.default_rng(6)
    metrics = Metrics()
    sliced = DriftMonitor(manifest, metrics, export_every=0, min_rows=100)
    alone = {name: DriftMonitor(manifest, Metrics(), export_every=0, min_rows=100) for name in ("x=a", "x=b")}
    labels = ["all", "x=a", "x=b", "x=c"]
    for call in range(20):
        shifted, plain = draw(rng, 30, shift=2.0), draw(rng, 70)
        matrix, scores = np.concatenate([shifted[0], plain[0]]), np.concatenate([shifted[1], plain[1]])
        slices = np.zeros((2, 100), np.int32)
        slices[1] = [1] * 30 + [2] * 70
        if call == 0:
            slices[1, -5:] = 3  # x=c: five rows, under min_rows: no gauge
        bins = sliced.observe(matrix, scores)
        assert bins is not None
        sliced.observe_slices(bins, slices, labels)
        alone["x=a"].observe(matrix[:30], scores[:30])
        alone["x=b"].observe(matrix[30:95] if call == 0 else matrix[30:], scores[30:95] if call == 0 else scores[30:])
    whole = sliced.export()
    for name, monitor in alone.items():
        expected = monitor.export()
        for feature, value in expected.items():
            got = metrics.registry.get_sample_value(
                "sibyl_slice_drift_psi", {"model": "m", "version": "3", "slice": name, "feature": feature}
            )
            assert got == pytest.approx(value, abs=1e-12), (name, feature)
    assert alone["x=a"].export()["a"] > 1.0 > whole["a"] > alone["x=b"].export()["a"]  # the slice shows the shift
    c = {"model": "m", "version": "3", "slice": "x=c", "feature": "a"}
    assert metrics.registry.get_sample_value("sibyl_slice_drift_psi", c) is None
    sliced.close()
    a = {"model": "m", "version": "3", "slice": "x=a", "feature": "a"}
    assert metrics.registry.get_sample_value("sibyl_slice_drift_psi", a) is None
