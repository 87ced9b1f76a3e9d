"""Helpers for tests and benchmarks: launchers for real Redis, Kafka-protocol, S3 and Prometheus servers."""

# Imported from the modules, not from servers.py, so `python -m tests.support.servers` runs without a warning.
from tests.support.kafka_broker import KafkaBroker, create_topic
from tests.support.process import MissingBinaryError, free_port
from tests.support.prometheus_server import PrometheusServer, promtool_path
from tests.support.redis_servers import RedisCluster, RedisServer
from tests.support.s3_server import S3Server, make_bucket

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
