"""Benchmark suite: load generator, scenarios, baselines, report. `python -m benchmarks --help`."""

from __future__ import annotations


def run(argv: list[str] | None = None) -> int:
    """Run the suite with command-line arguments; returns the exit code."""
    from benchmarks.cli import run as _run

    return _run(argv)


__all__ = ["run"]
