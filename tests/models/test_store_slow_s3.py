"""S3Store.read against a real (moto) S3 server behind tests/support/latency_proxy: a body cut mid-object, a
trickling download and 500s all end as ModelStoreError (what the registry counts and retries at its next poll),
never as another exception type and never as a short bytes object; a healthy read returns the whole object."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from sibyl.errors import ModelStoreError
from sibyl.models.store import S3Store
from tests.support.latency_proxy import LatencyProxy
from tests.support.servers import S3Server, make_bucket

BLOB = bytes(range(256)) * 256  # 64 KiB


@pytest.fixture
def proxied(s3_server: S3Server, aws_env: None) -> Iterator[tuple[S3Store, LatencyProxy]]:
    s3_server.start()
    bucket = f"slow-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server.endpoint_url, bucket)
    S3Store(bucket, "p", s3_server.endpoint_url, "us-east-1").write("models/m/1/model.onnx", BLOB)
    with LatencyProxy(s3_server.port) as proxy:
        yield S3Store(bucket, "p", f"http://{proxy.address}", "us-east-1", read_timeout_s=1.0), proxy


def test_a_whole_read_returns_every_byte(proxied: tuple[S3Store, LatencyProxy]) -> None:
    store, _ = proxied
    assert store.read("models/m/1/model.onnx") == BLOB


def test_a_body_cut_mid_object_is_a_store_error(proxied: tuple[S3Store, LatencyProxy]) -> None:
    store, proxy = proxied
    proxy.truncate_next(1, after_bytes=10_000, path_contains="model.onnx")
    with pytest.raises(ModelStoreError, match=r"model\.onnx"):
        store.read("models/m/1/model.onnx")
    assert proxy.counts.truncated == 1
    assert store.read("models/m/1/model.onnx") == BLOB


def test_a_trickling_download_fails_at_the_read_timeout(proxied: tuple[S3Store, LatencyProxy]) -> None:
    store, proxy = proxied
    proxy.limit(down_bytes_per_s=4096)  # 16 s for the whole object
    start = time.monotonic()
    with pytest.raises(ModelStoreError, match="did not finish within 1 s"):
        store.read("models/m/1/model.onnx")
    assert time.monotonic() - start < 10  # far less than the download (generous: a chunk overshoots the deadline)


def test_500s_are_a_store_error(proxied: tuple[S3Store, LatencyProxy]) -> None:
    store, proxy = proxied
    proxy.fail_next(100, path_contains="model.onnx")
    with pytest.raises(ModelStoreError, match=r"500|InternalError"):
        store.read("models/m/1/model.onnx")
    assert proxy.counts.injected_status >= 1
