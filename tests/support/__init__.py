"""Helpers for tests and benchmarks: launchers for real Redis, Kafka-protocol, S3 and Prometheus servers
(import them from tests.support.servers), an in-process sibyl server, small ONNX models, Kafka read-back."""
