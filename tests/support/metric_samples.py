"""Every sample a Prometheus registry (or a server's /metrics page) holds, keyed by name and labels, for comparing
series and reading them in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: ignore HTTP(S)_PROXY


def samples(registry: CollectorRegistry) -> dict[SampleKey, float]:
    """{(sample name, sorted labels): value}, without the *_created timestamps (they differ between registries)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def scraped(port: int) -> dict[SampleKey, float]:
    """{(sample name, sorted labels): value} of what http://127.0.0.1:port/metrics serves now."""
    with _OPENER.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> SampleKey:
    return name, tuple(sorted(labels.items()))
