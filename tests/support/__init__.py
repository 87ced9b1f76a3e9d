"""Helpers for tests and benchmarks, never a test (tests/README.md says what lives where): launchers for real Redis,
Kafka-protocol, S3 and Prometheus servers (import them from tests.support.servers), an in-process sibyl server,
small ONNX models, Kafka read-back, a throwaway CA, and the helpers several test folders share."""
