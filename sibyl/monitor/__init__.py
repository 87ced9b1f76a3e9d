"""Outcomes joined to predictions: `sibyl monitor` (the evaluator) and `sibyl models compare` (docs/monitoring.md).

records (the two streams read into arrays: prediction log records, outcomes), sources (files, or Kafka topics as a
consumer group, per partition), state (one partition's join state and quality statistics in SQLite, durable with
its read positions), evaluator (the loop: read, slice, join, commit), export (the monitor's /metrics), compare (the
primary against each shadow and arm on labelled rows, with confidence intervals; the promote gate).

May import (tests/test_layout.py RANK): serving (the slices), models, quality, observability, errors and the
generated v1 code; the cli builds it.
"""
