"""Helpers for tests and benchmarks: launchers for real Redis, Kafka-protocol, S3 and Prometheus servers."""

from sibyl.testing.servers import (
    KafkaBroker,
    MissingBinaryError,
    PrometheusServer,
    RedisCluster,
    RedisServer,
    S3Server,
    create_topic,
    free_port,
    make_bucket,
    promtool_path,
)

__all__ = [
    "KafkaBroker",
    "MissingBinaryError",
    "PrometheusServer",
    "RedisCluster",
    "RedisServer",
    "S3Server",
    "create_topic",
    "free_port",
    "make_bucket",
    "promtool_path",
]
