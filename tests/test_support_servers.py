"""The test-server launchers start real servers that answer, and come back on the same port after a stop."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaProducer

from tests.support.kafkaread import read_messages
from tests.support.needs import missing
from tests.support.s3_server import s3_client
from tests.support.servers import (
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

pytestmark = pytest.mark.timeout(60)


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_answers_and_restarts_on_same_port() -> None:
    import redis

    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        client.set("k", "v")
        assert client.get("k") == b"v"
        port = server.port
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.port == port
        assert client.ping()
        assert client.get("k") is None  # no persistence: a restart is empty
        client.close()


def test_fresh_redis_is_empty(fresh_redis: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(fresh_redis.url)
    assert client.dbsize() == 0
    client.set("left-behind", 1)  # the next test using fresh_redis must not see it
    client.close()


def test_fresh_redis_flushes_between_tests(fresh_redis: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(fresh_redis.url)
    assert client.get("left-behind") is None
    client.close()


def test_redis_cluster_spreads_slots(redis_cluster: RedisCluster) -> None:
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as ClusterClient

    assert len(redis_cluster.startup_nodes) == 3
    client = ClusterClient(startup_nodes=[ClusterNode(h, p) for h, p in redis_cluster.startup_nodes])
    try:
        for i in range(30):
            client.set(f"key-{i}", i)
        assert [int(client.get(f"key-{i}")) for i in range(30)] == list(range(30))
        owners = {client.get_node_from_key(f"key-{i}").port for i in range(30)}
        assert owners == set(redis_cluster.ports)
    finally:
        client.close()


def test_redis_cluster_restarts_on_same_ports(redis_cluster: RedisCluster) -> None:
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as ClusterClient

    ports = redis_cluster.ports
    redis_cluster.stop()
    redis_cluster.start()  # returns only once every node reports cluster_state:ok again
    assert redis_cluster.ports == ports
    client = ClusterClient(startup_nodes=[ClusterNode(h, p) for h, p in redis_cluster.startup_nodes])
    try:
        client.set("after-restart", 1)
        assert client.get("after-restart") == b"1"
    finally:
        client.close()


def test_kafka_produce_consume_and_restart(kafka_broker: KafkaBroker) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker.bootstrap, topic)
    create_topic(kafka_broker.bootstrap, topic)  # idempotent
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    producer.send(topic, b"hello").get(timeout=10)
    producer.close()
    assert [m.value for m in read_messages(kafka_broker.bootstrap, topic, 1)] == [b"hello"]

    port = kafka_broker.port
    kafka_broker.stop()
    kafka_broker.start()
    assert kafka_broker.port == port
    create_topic(kafka_broker.bootstrap, topic)  # memory storage: the topic is new again
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    producer.send(topic, b"again").get(timeout=10)
    producer.close()
    assert [m.value for m in read_messages(kafka_broker.bootstrap, topic, 1)] == [b"again"]


def test_s3_put_get_restart_and_reset(s3_server: S3Server) -> None:
    bucket = f"bucket-{uuid.uuid4().hex[:8]}"
    make_bucket(s3_server.endpoint_url, bucket)
    make_bucket(s3_server.endpoint_url, bucket)  # idempotent
    client = s3_client(s3_server.endpoint_url)
    client.put_object(Bucket=bucket, Key="a/b.txt", Body=b"payload")
    assert client.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"payload"

    port = s3_server.port
    s3_server.stop()
    with pytest.raises(Exception, match="Could not connect"):
        s3_client(s3_server.endpoint_url).list_buckets()
    s3_server.start()
    assert s3_server.port == port
    assert client.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"payload"


def test_s3_reset_empties_the_store() -> None:
    with S3Server() as server:
        make_bucket(server.endpoint_url, "to-be-reset")
        server.reset()
        assert s3_client(server.endpoint_url).list_buckets()["Buckets"] == []


def test_s3_start_on_busy_port_names_the_port() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {busy}"):
            S3Server(port=busy).start()


def test_prometheus_scrapes_itself() -> None:
    try:
        assert promtool_path()
        server = PrometheusServer("scrape_configs: []\n")
    except MissingBinaryError as exc:
        missing(exc)
    config = f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: self
    static_configs: [{{targets: ["127.0.0.1:{server.port}"]}}]
"""
    server.config_path.write_text(config)
    with server:
        result = server.query("vector(1) + 1")
        assert result["resultType"] == "vector"
        assert float(result["result"][0]["value"][1]) == 2.0
        with pytest.raises(ValueError, match="rejected"):
            server.query("sum(")
        deadline = time.monotonic() + 20
        while not server.query('up{job="self"} == 1')["result"]:
            assert time.monotonic() < deadline, "prometheus never scraped itself"
            time.sleep(0.2)


def test_missing_binary_error_names_what_to_install() -> None:
    from tests.support.process import find_binary

    with pytest.raises(MissingBinaryError, match="pip install nothing-here"):
        find_binary("no-such-binary-sibyl", "pip install nothing-here")


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_binary_fails_in_ci_and_skips_elsewhere(
    ci: str, outcome: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get install x"):
        missing(MissingBinaryError("x", "apt-get install x"))
