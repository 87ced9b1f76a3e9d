"""Percentile math on known inputs, and histogram merging across client processes."""

from __future__ import annotations

import itertools

from benchmarks.load.stats import cdf_points, encode, merge, new_histogram, record_us, summarize


def _hist(values: range | list[int]) -> object:
    h = new_histogram()
    for v in values:
        record_us(h, v)
    return h


def test_percentiles_exact_on_one_to_thousand_us() -> None:
    s = summarize(_hist(range(1, 1001)))
    assert (s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms) == (1000, 0.5, 0.9, 0.99, 0.999, 1.0)
    assert s.mean_ms == 0.5005


def test_one_outlier_is_the_max_and_beyond_p999() -> None:
    s = summarize(_hist([100] * 999 + [200_000]))
    assert s.p50_ms == s.p99_ms == s.p999_ms == 0.1
    assert 199.9 <= s.max_ms <= 200.1  # above 2048 us values are kept within 0.1%


def test_sub_microsecond_and_huge_values_are_clamped_not_dropped() -> None:
    h = new_histogram()
    record_us(h, 0.2)
    record_us(h, 10**12)
    assert h.get_total_count() == 2
    assert h.get_min_value() == 1


def test_merge_of_encoded_parts_equals_one_histogram() -> None:
    a, b = _hist(range(1, 501)), _hist(range(501, 1001))
    merged = summarize(merge([encode(a), encode(b)]))
    assert merged == summarize(_hist(range(1, 1001)))


def test_empty_histogram_summarizes_to_zero() -> None:
    s = summarize(new_histogram())
    assert s.count == 0 and s.p99_ms == 0.0


def test_cdf_points_are_monotonic_and_end_at_100() -> None:
    points = cdf_points(_hist(range(1, 5001)), max_points=50)
    assert len(points) <= 51
    assert points[-1][1] == 100.0
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(points))
