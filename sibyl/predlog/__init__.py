"""Prediction log: PredictionLog records to a JSONL file (default) or Kafka, with a disk spool for outages;
`sibyl predlog tail` reads them back (tail). Outcomes go the same ways (outcome_sink).

The sink interface (base) and the choice of sink from settings (factory, settings); the bounded hand-off from the
request path (queue); the file sink (file) and its JSON lines (jsonl); the Kafka sink (kafka), its producer,
kafka-python or confluent-kafka (producers), what it keeps per record (payload), records the broker refuses
(poison), and the disk spool (spool); records not kept, counted by reason (losses). What a sink carries
(stream): the prediction log, or reported outcomes, which the same sinks write beside it (outcome_sink). Records
read back from a log line or a Kafka value, for the archive and the monitor (read).

May import (tests/test_layout.py RANK): models, observability, errors and the generated v1/kserve code; never
features (same rank) or anything above.
"""

from sibyl.predlog.factory import NullSink, build_sink

__all__ = ["NullSink", "build_sink"]
