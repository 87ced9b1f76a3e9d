"""Blob stores behind one interface: a local folder (file://, the default) and any S3-compatible API (s3://).

Keys are '/'-separated paths relative to the store root, e.g. "models/gbdt/1/model.onnx". The layout
(what lives under which key) is the catalog's business, not the store's.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from sibyl.errors import ConfigError, MissingDependency, ModelStoreError, NotFound


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
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, region: str) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise MissingDependency("boto3", "s3", "an s3:// model store") from None
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=10)
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_check_key(key)}" if self.prefix else _check_key(key)

    def _fail(self, what: str, exc: Exception) -> ModelStoreError:
        return ModelStoreError(f"{what} in {self.url} failed: {exc}")

    def read(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._errors as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"{key} not found in model store {self.url}") from None
            raise self._fail(f"reading {key}", exc) from None

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
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(f"checking {key}", exc) from None


def open_store(url: str, endpoint_url: str | None = None, region: str = "us-east-1") -> BlobStore:
    """file:///path, a plain /path, or s3://bucket[/prefix]."""
    if url.startswith("/"):
        return FileStore(url)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStore(parsed.netloc + parsed.path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"model store url {url!r} names no bucket (s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path, endpoint_url, region)
    raise ConfigError(f"model store url {url!r}: use file:///path or s3://bucket/prefix")
