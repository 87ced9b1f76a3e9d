"""Every sample a Prometheus registry holds, keyed by name and labels, for comparing two registries' series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def samples(registry: CollectorRegistry) -> dict[SampleKey, float]:
    """{(sample name, sorted labels): value}, without the *_created timestamps (they differ between registries)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }
