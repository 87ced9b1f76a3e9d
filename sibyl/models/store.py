"""Blob stores behind one interface: a local folder (file://, the default) and any S3-compatible API (s3://).

Keys are '/'-separated paths relative to the store root, e.g. "models/gbdt/1/model.onnx". The layout
(what lives under which key) is the catalog's business, not the store's.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from sibyl.errors import ConfigError, MissingDependency, ModelStoreError, NotFound

# A download is read in chunks of about this many seconds at the rate seen so far (within the bounds below), so
# the read deadline is checked often on a slow link and the per-chunk cost stays small on a fast one.
_CHUNK_S = 0.25
_CHUNK_BYTES = (4 * 1024, 4 * 1024 * 1024)


class BlobStore(Protocol):
    url: str

    def read(self, key: str) -> bytes:
        """Raise NotFound when the key does not exist, ModelStoreError when the store fails."""

    def write(self, key: str, data: bytes) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Keys under prefix (recursive), sorted."""

    def tag(self, key: str) -> str | None:
        """A cheap change marker (ETag, mtime+size); None when the key does not exist."""


def _check_key(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ModelStoreError(f"invalid store key {key!r}")
    return key


class FileStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{key} not found in model store {self.url}") from None
        except OSError as exc:
            raise ModelStoreError(f"cannot read {key} from {self.url}: {exc.strerror}") from None

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temp file and rename, so a poller never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def tag(self, key: str) -> str | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return f"{st.st_mtime_ns}-{st.st_size}"


class S3Store:
    """read_timeout_s bounds a whole read (GET and body), not each socket read: a store that trickles bytes
    (docs/reliability.md#slow-dependencies) fails the read instead of holding the poller for hours."""

    def __init__(
        self, bucket: str, prefix: str, endpoint_url: str | None, region: str, read_timeout_s: float = 300.0
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise MissingDependency("boto3", "s3", "an s3:// model store") from None
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.read_timeout_s = read_timeout_s
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=10)
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

        self._errors = (BotoCoreError, ClientError)
        self._read_timeout = ReadTimeoutError

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_check_key(key)}" if self.prefix else _check_key(key)

    def _fail(self, what: str, exc: Exception) -> ModelStoreError:
        return ModelStoreError(f"{what} in {self.url} failed: {exc}")

    def read(self, key: str) -> bytes:
        """The whole object; a body shorter than its Content-Length (a cut connection) raises ModelStoreError, as
        does a read that has not finished within read_timeout_s."""
        deadline = time.monotonic() + self.read_timeout_s
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            body = response["Body"]
            try:
                return self._read_body(body, int(response["ContentLength"]), key, deadline)
            finally:
                body.close()
        except self._errors as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"{key} not found in model store {self.url}") from None
            if isinstance(exc, self._read_timeout) and time.monotonic() >= deadline:  # out of the time left
                raise self._too_slow(key) from None
            raise self._fail(f"reading {key}", exc) from None

    def _read_body(self, body: Any, length: int, key: str, deadline: float) -> bytes:
        """botocore's StreamingBody in chunks until Content-Length bytes are in, each socket read bounded by the
        time left (the socket is only there until the last byte is read)."""
        chunks: list[bytes] = []
        size, chunk, start = 0, _CHUNK_BYTES[0], time.monotonic()
        while size < length:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._too_slow(key)
            body.set_socket_timeout(left)
            data = body.read(min(chunk, length - size))
            if not data:
                raise ModelStoreError(f"reading {key} from {self.url}: body ended at {size} of {length} bytes")
            chunks.append(data)
            size += len(data)
            rate = size / max(time.monotonic() - start, 1e-3)
            chunk = int(min(max(rate * _CHUNK_S, _CHUNK_BYTES[0]), _CHUNK_BYTES[1]))
        return b"".join(chunks)

    def _too_slow(self, key: str) -> ModelStoreError:
        return ModelStoreError(
            f"reading {key} from {self.url} did not finish within {self.read_timeout_s:g} s "
            "(model_store.s3_read_timeout_s)"
        )

    def write(self, key: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except self._errors as exc:
            raise self._fail(f"writing {key}", exc) from None

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix) if prefix else self.prefix
        full = full.rstrip("/") + "/" if full else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except self._errors as exc:
            raise self._fail(f"listing {prefix or '/'}", exc) from None
        return sorted(keys)

    def tag(self, key: str) -> str | None:
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=self._key(key))["ETag"]
        except self._errors as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(f"checking {key}", exc) from None


def _error_code(exc: Exception) -> str | None:
    """S3's error code of a ClientError; None for botocore's own errors, whose `response` may be None (a read
    timeout, a connection cut mid-body)."""
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def open_store(
    url: str, endpoint_url: str | None = None, region: str = "us-east-1", s3_read_timeout_s: float = 300.0
) -> BlobStore:
    """file:///path, a plain /path, or s3://bucket[/prefix]."""
    if url.startswith("/"):
        return FileStore(url)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStore(parsed.netloc + parsed.path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"model store url {url!r} names no bucket (s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path, endpoint_url, region, s3_read_timeout_s)
    raise ConfigError(f"model store url {url!r}: use file:///path or s3://bucket/prefix")
