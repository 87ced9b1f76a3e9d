"""Helpers for tests and benchmarks: launchers for real Redis, Kafka-protocol, S3 and Prometheus servers."""

# Imported from the modules, not from servers.py, so `python -m sibyl.testing.servers` runs without a warning.
from sibyl.testing.kafka_broker import KafkaBroker, create_topic
from sibyl.testing.process import MissingBinaryError, free_port
from sibyl.testing.prometheus_server import PrometheusServer, promtool_path
from sibyl.testing.redis_servers import RedisCluster, RedisServer
from sibyl.testing.s3_server import S3Server, make_bucket

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
