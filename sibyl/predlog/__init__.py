"""Prediction log: PredictionLog records to a JSONL file (default) or Kafka, with a disk spool for outages;
`sibyl predlog tail` reads them back (tail).

May import (tests/test_layout.py RANK): models, observability, errors and the generated v1/kserve code; never
features (same rank) or anything above.
"""

from sibyl.predlog.factory import NullSink, build_sink

__all__ = ["NullSink", "build_sink"]
