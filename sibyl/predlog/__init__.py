"""Prediction log: PredictionLog records to a JSONL file (default) or Kafka, with a disk spool for outages."""

from sibyl.predlog.factory import NullSink, build_sink

__all__ = ["NullSink", "build_sink"]
