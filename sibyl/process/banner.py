"""The one stdout line `sibyl serve` prints once its port serves (one process or a supervisor of workers).

Launchers wait for it and read the ports from it (tests/support/inproc.py, benchmarks/scenarios/servers.py):
keep its shape.
"""

from __future__ import annotations


def serving_line(host: str, port: int, metrics_port: int, workers: int | None = None) -> str:
    """metrics_port 0: no metrics endpoint; workers: the supervisor's count (None for a single process)."""
    with_workers = f" with {workers} workers" if workers is not None else ""
    return f"sibyl serving on {host}:{port}{with_workers} (metrics :{metrics_port})"
