"""Benchmark suite: load generator, scenarios, baselines, report. `python -m benchmarks --help`."""
