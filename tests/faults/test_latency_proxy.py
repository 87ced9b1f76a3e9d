"""tests/support/latency_proxy.LatencyProxy against real servers: bytes pass unchanged, a delay delays, a stall
holds and resume releases, a bandwidth limit slows a download, and HTTP faults answer 500 or cut a body.

Times are compared with generous bounds against the injected delay (never against absolute figures)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.latency_proxy import LatencyProxy
from tests.support.s3_server import s3_client
from tests.support.servers import RedisServer, S3Server, make_bucket

pytestmark = pytest.mark.faults


@pytest.fixture
def redis_proxy(redis_server: RedisServer) -> Iterator[LatencyProxy]:
    with LatencyProxy(redis_server.port) as proxy:
        yield proxy


def redis_reply(port: int, command: bytes, size: int) -> bytes:
    """Send one command over a fresh connection; read until `size` bytes of reply are in."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        reply = b""
        while len(reply) < size:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def ping_s(port: int, timeout_s: float = 5.0) -> float:
    """One PING over a fresh connection: seconds until PONG (raises on a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        start = time.monotonic()
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"
        return time.monotonic() - start


def test_bytes_pass_unchanged(redis_proxy: LatencyProxy) -> None:
    key = uuid.uuid4().hex.encode()
    value = bytes(range(256)) * 400  # 100 KiB, more than one read
    command = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value)
    assert redis_reply(redis_proxy.port, command, 5) == b"+OK\r\n"
    get = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)
    expected = b"$%d\r\n%s\r\n" % (len(value), value)
    assert redis_reply(redis_proxy.port, get, len(expected)) == expected
    assert redis_proxy.counts.connections == 2


def test_delay_applies_each_way_and_lifts(redis_proxy: LatencyProxy) -> None:
    redis_proxy.delay(up_s=0.1, down_s=0.2)
    assert ping_s(redis_proxy.port) >= 0.3
    redis_proxy.reset()
    assert ping_s(redis_proxy.port) < 0.3  # the injected delay, not a figure about the machine


def test_stall_holds_bytes_until_resume(redis_proxy: LatencyProxy) -> None:
    with socket.create_connection(("127.0.0.1", redis_proxy.port), timeout=5) as sock:
        redis_proxy.stall()
        sock.sendall(b"PING\r\n")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(64)
        redis_proxy.resume()
        sock.settimeout(5)
        assert sock.recv(64) == b"+PONG\r\n"


def test_bandwidth_limit_slows_a_download(s3_server: S3Server) -> None:
    s3_server.start()
    bucket = f"proxy-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server.endpoint_url, bucket)
    s3_client(s3_server.endpoint_url).put_object(Bucket=bucket, Key="blob", Body=b"x" * 4096)
    with LatencyProxy(s3_server.port) as proxy:
        client = s3_client(f"http://{proxy.address}")
        proxy.limit(down_bytes_per_s=4096)
        start = time.monotonic()
        assert client.get_object(Bucket=bucket, Key="blob")["Body"].read() == b"x" * 4096
        assert time.monotonic() - start >= 0.9  # 4 KiB body (plus headers) at 4 KiB/s


def test_http_faults_answer_500_then_cut_a_body(s3_server: S3Server) -> None:
    from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

    s3_server.start()
    bucket = f"proxy-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server.endpoint_url, bucket)
    body = bytes(range(256)) * 64
    s3_client(s3_server.endpoint_url).put_object(Bucket=bucket, Key="m/model.onnx", Body=body)
    with LatencyProxy(s3_server.port) as proxy:
        client = s3_client(f"http://{proxy.address}")  # it retries: every attempt gets the 500
        proxy.fail_next(10, path_contains="model.onnx")
        with pytest.raises(ClientError) as error:
            client.get_object(Bucket=bucket, Key="m/model.onnx")
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert proxy.counts.injected_status >= 2
        assert proxy.http_faults_left() == 10 - proxy.counts.injected_status
        proxy.reset()
        proxy.truncate_next(1, after_bytes=1000, path_contains="model.onnx")
        with pytest.raises((IncompleteReadError, ResponseStreamingError)):
            client.get_object(Bucket=bucket, Key="m/model.onnx")["Body"].read()
        assert proxy.counts.truncated == 1
        assert client.get_object(Bucket=bucket, Key="m/model.onnx")["Body"].read() == body  # faults used up
        assert proxy.http_faults_left() == 0
