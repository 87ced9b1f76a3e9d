"""An S3 API on loopback: moto's threaded server, in this process.

moto keeps its buckets in process-global state, so objects survive `stop()`/`start()` (like a real store
coming back after an outage); `reset()` clears them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any, Self

from tests.support.process import LOOPBACK, MissingBinaryError, free_port, port_is_free

HINT = "pip install 'moto[server]' boto3"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
# Loopback only: ignore any HTTP(S)_PROXY in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method: str, url: str) -> int:
    try:
        with _OPENER.open(urllib.request.Request(url, method=method), timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class S3Server:
    """`with S3Server() as s3: s3.endpoint_url` -> "http://127.0.0.1:P"."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 15.0) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise MissingBinaryError("moto server", HINT) from None
        self._factory = ThreadedMotoServer
        self.port = port if port is not None else free_port()
        self.start_timeout_s = start_timeout_s
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        # moto's start() waits forever if its bind fails, so check the port first.
        if not port_is_free(self.port):
            raise RuntimeError(f"cannot start S3 server: port {self.port} on {LOOPBACK} is in use")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        server = self._factory(ip_address=LOOPBACK, port=self.port, verbose=False)
        server.start()
        self._server = server
        deadline = time.monotonic() + self.start_timeout_s
        while _http("GET", f"{self.endpoint_url}/moto-api/") != 200:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"S3 server on port {self.port} not ready after {self.start_timeout_s:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket, so clients get connection refused."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stop()
        if server._server is not None:  # moto's stop() leaves the socket open
            server._server.server_close()

    def reset(self) -> None:
        """Delete every bucket and object."""
        status = _http("POST", f"{self.endpoint_url}/moto-api/reset")
        if status != 200:
            raise RuntimeError(f"S3 server reset failed with HTTP {status}")

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client with test credentials, no proxy, path-style addressing."""
    import boto3
    from botocore.config import Config

    config = Config(proxies={}, s3={"addressing_style": "path"}, retries={"max_attempts": 2})
    return boto3.client("s3", endpoint_url=endpoint_url, config=config, **CREDENTIALS)


def make_bucket(endpoint_url: str, name: str) -> None:
    """Create bucket `name` (no error if it already exists)."""
    client = s3_client(endpoint_url)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=name)
