"""Latency histograms: HDR histograms in microseconds, merged across client processes, summarised in ms."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: anything slower is clamped (and is a failure anyway)
SIGNIFICANT_DIGITS = 3  # values below 2048 us are exact; above, within 0.1%
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_us(hist: HdrHistogram, latency_us: float) -> None:
    """Record one latency; sub-microsecond values count as 1 us, huge ones are clamped, never dropped."""
    hist.record_value(min(max(round(latency_us), LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    """Compressed base64 form, small enough to send back from a client process."""
    data = hist.encode()
    return data.decode("ascii") if isinstance(data, bytes) else str(data)


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every value of the encoded histograms (one per client process)."""
    total = new_histogram()
    for text in encoded:
        total.add(HdrHistogram.decode(text))
    return total


@dataclass(frozen=True)
class Summary:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "max_ms": self.max_ms,
            "mean_ms": self.mean_ms,
        }


def _ms(us: float) -> float:
    return round(us / 1000.0, 4)


def summarize(hist: HdrHistogram) -> Summary:
    """Percentiles in milliseconds; an empty histogram gives zeros with count 0."""
    count = hist.get_total_count()
    if count == 0:
        return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p50, p90, p99, p999 = (hist.get_value_at_percentile(p) for p in PERCENTILES)
    return Summary(
        count, _ms(p50), _ms(p90), _ms(p99), _ms(p999), _ms(hist.get_max_value()), _ms(hist.get_mean_value())
    )


def cdf_points(hist: HdrHistogram, max_points: int = 200) -> list[tuple[float, float]]:
    """(latency_ms, percentile) pairs for a CDF plot: every distinct recorded bucket, thinned to max_points."""
    points = [
        (item.value_iterated_to / 1000.0, item.percentile_level_iterated_to) for item in hist.get_recorded_iterator()
    ]
    if len(points) > max_points:
        step = len(points) / max_points
        thinned = [points[int(i * step)] for i in range(max_points)]
        points = [*thinned, points[-1]]
    return [(round(v, 4), round(p, 4)) for v, p in points]
