"""A TCP proxy that makes a dependency slow rather than dead: per-direction latency, a stall, a bandwidth limit,
and for HTTP (the S3 store) injected 5xx answers and responses cut off mid-body.

    with LatencyProxy(redis.port) as proxy:          # clients connect to proxy.port instead
        proxy.delay(down_s=0.05)                     # every answer byte arrives 50 ms late (latency, not rate)
        proxy.stall()                                # hold every byte both ways (connections stay open)
        proxy.resume()
        proxy.limit(down_bytes_per_s=1024)           # 1 KB/s downloads
        proxy.fail_next(3, path_contains="/model.onnx")          # the next 3 such GETs answer HTTP 500
        proxy.truncate_next(1, after_bytes=100, path_contains="/model.onnx")  # body cut after 100 bytes
        proxy.reset()                                # all of it off

It runs its own asyncio loop on a daemon thread, so it serves synchronous clients, async tests and `sibyl
serve` subprocesses alike; every setter may be called from any thread and applies to bytes not yet forwarded,
on open connections too. Delays are latency: a byte read at t is written at t + delay, while later bytes keep
being read meanwhile. HTTP faults assume HTTP/1.1 without pipelining and requests with Content-Length bodies
(what botocore sends); they only look at requests whose method and path match.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from tests.support.process import LOOPBACK

_CHUNK = 64 * 1024
_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>InternalError</Code><Message>injected by LatencyProxy</Message></Error>"
)


@dataclass
class HttpFault:
    """What the next `remaining` matching requests get: an error status, or their response cut after_bytes."""

    remaining: int
    method: str
    path_contains: str
    status: int = 0  # answered by the proxy itself (the request never reaches the server)
    after_bytes: int = -1  # >= 0: forward, then close the connection after this many body bytes

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and method == self.method and self.path_contains in path


@dataclass
class Counts:
    """What the proxy did, for tests to check that a fault was real."""

    connections: int = 0
    injected_status: int = 0
    truncated: int = 0
    bytes_down: int = 0
    bytes_up: int = 0


@dataclass
class _Settings:
    up_delay_s: float = 0.0
    down_delay_s: float = 0.0
    up_bytes_per_s: float = 0.0  # 0: unlimited
    down_bytes_per_s: float = 0.0
    stalled: bool = False
    http: list[HttpFault] = field(default_factory=list)


class LatencyProxy:
    def __init__(self, target_port: int, target_host: str = LOOPBACK) -> None:
        self.target = (target_host, target_port)
        self.settings = _Settings()
        self.counts = Counts()
        self._lock = threading.Lock()  # guards HttpFault.remaining between the loop and setters
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="latency-proxy", daemon=True)
        self._resumed = asyncio.Event()  # set while not stalled; touched on the loop only
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # ---- lifecycle
    def start(self) -> Self:
        self._thread.start()
        self._call(self._resumed.set)
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, LOOPBACK, 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    # ---- faults (any thread)
    def delay(self, up_s: float = 0.0, down_s: float = 0.0) -> None:
        """Latency added to bytes going to the server (up) and to the client (down)."""
        self.settings.up_delay_s, self.settings.down_delay_s = up_s, down_s

    def limit(self, down_bytes_per_s: float = 0.0, up_bytes_per_s: float = 0.0) -> None:
        """Bandwidth per connection and direction; 0 lifts the limit."""
        self.settings.down_bytes_per_s, self.settings.up_bytes_per_s = down_bytes_per_s, up_bytes_per_s

    def stall(self) -> None:
        """Hold every byte both ways until resume(); connections stay open (a hung peer, a black-holed link)."""
        self.settings.stalled = True
        self._call(self._resumed.clear)

    def resume(self) -> None:
        self.settings.stalled = False
        self._call(self._resumed.set)

    def fail_next(self, count: int, status: int = 500, path_contains: str = "", method: str = "GET") -> None:
        """The next `count` HTTP requests whose path contains `path_contains` are answered `status` by the proxy."""
        with self._lock:
            self.settings.http.append(HttpFault(count, method, path_contains, status=status))

    def truncate_next(self, count: int, after_bytes: int, path_contains: str = "", method: str = "GET") -> None:
        """The next `count` matching responses stop after `after_bytes` of their body; the connection closes."""
        with self._lock:
            self.settings.http.append(HttpFault(count, method, path_contains, after_bytes=after_bytes))

    def http_faults_left(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self.settings.http)

    def reset(self) -> None:
        """No delay, no limit, no stall, no HTTP faults."""
        self.delay()
        self.limit()
        with self._lock:
            self.settings.http = []
        self.resume()

    def _call(self, fn: Callable[[], object]) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(fn)

    def _take_http_fault(self, method: str, path: str) -> HttpFault | None:
        with self._lock:
            for fault in self.settings.http:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None

    # ---- the loop's side
    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._resumed.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        down: asyncio.Queue[tuple[float, bytes, int]] = asyncio.Queue(maxsize=256)
        up: asyncio.Queue[tuple[float, bytes, int]] = asyncio.Queue(maxsize=256)
        conn = _Connection(self, down)
        tasks = [
            asyncio.create_task(_quietly(conn.read_client(client_r, up), up)),
            asyncio.create_task(self._write(up, server_w, "up", conn)),
            asyncio.create_task(_quietly(conn.read_server(server_r, down), down)),
            asyncio.create_task(self._write(down, client_w, "down", conn)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            # One side ended: let what is queued drain (bounded), then close both.
            await asyncio.wait(tasks, timeout=2.0)
        finally:
            for task in tasks:
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                writer.close()

    async def _write(
        self, queue: asyncio.Queue[tuple[float, bytes, int]], writer: asyncio.StreamWriter, way: str, conn: _Connection
    ) -> None:
        """Forward queued chunks at read time + delay, after any stall, within the bandwidth limit. A chunk
        with a close flag (1) ends the connection after it is written (a truncated response)."""
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                read_at, data, close_after = await queue.get()
                if not data and not close_after:
                    break  # EOF from the reading side
                s = self.settings
                wait = read_at + (s.up_delay_s if way == "up" else s.down_delay_s) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._resumed.wait()
                await self._send(writer, data, way)
                if close_after:
                    conn.closed = True
                    break
            with contextlib.suppress(OSError):
                writer.write_eof()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, way: str) -> None:
        view = memoryview(data)
        while view:
            rate = self.settings.up_bytes_per_s if way == "up" else self.settings.down_bytes_per_s
            step = len(view) if rate <= 0 else max(1, int(rate / 20))  # ~50 ms of bytes at a time
            piece, view = view[:step], view[step:]
            await self._resumed.wait()
            writer.write(piece)
            await writer.drain()
            if way == "up":
                self.counts.bytes_up += len(piece)
            else:
                self.counts.bytes_down += len(piece)
            if rate > 0:
                await asyncio.sleep(len(piece) / rate)


class _Connection:
    """One client connection's reading side: plain bytes, or (with HTTP faults set) requests told apart so a
    matching one can be answered by the proxy or have its response cut."""

    def __init__(self, proxy: LatencyProxy, down: asyncio.Queue[tuple[float, bytes, int]]) -> None:
        self.proxy, self.down = proxy, down
        self.closed = False
        self._cut_after: int | None = None  # the response under way is cut after this many body bytes

    async def read_client(self, reader: asyncio.StreamReader, up: asyncio.Queue[tuple[float, bytes, int]]) -> None:
        buffer, body_left = b"", 0
        while not self.closed:
            data = await reader.read(_CHUNK)
            if not data:
                break
            if not self.proxy.settings.http and not buffer and body_left == 0:
                await up.put((time.monotonic(), data, 0))
                continue
            buffer += data
            while buffer:
                if body_left:  # the body of a forwarded request
                    part, buffer = buffer[:body_left], buffer[body_left:]
                    body_left -= len(part)
                    await up.put((time.monotonic(), part, 0))
                    continue
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break  # the rest of the head is still to come
                head, buffer = buffer[: end + 4], buffer[end + 4 :]
                method, _, rest = head.partition(b" ")
                path = rest.partition(b" ")[0].decode("latin-1")
                length = _content_length(head)
                fault = self.proxy._take_http_fault(method.decode("latin-1"), path)
                if fault is not None and fault.status:
                    self.proxy.counts.injected_status += 1
                    buffer = buffer[length:]  # the body is swallowed with its request (GETs have none)
                    await self.down.put((time.monotonic(), _error_response(fault.status), 0))
                    continue
                if fault is not None:
                    self._cut_after = fault.after_bytes
                await up.put((time.monotonic(), head, 0))
                body_left = length
        await up.put((time.monotonic(), b"", 0))

    async def read_server(self, reader: asyncio.StreamReader, down: asyncio.Queue[tuple[float, bytes, int]]) -> None:
        head = b""
        while not self.closed:
            data = await reader.read(_CHUNK)
            if not data:
                break
            if self._cut_after is None:
                await down.put((time.monotonic(), data, 0))
                continue
            head += data  # the head of the response to cut, then its first bytes
            end = head.find(b"\r\n\r\n")
            if end < 0:
                continue
            whole = end + 4 + _content_length(head[: end + 4])
            keep = end + 4 + self._cut_after
            if keep >= whole:  # a response shorter than the cut passes whole
                self._cut_after = None
                await down.put((time.monotonic(), head, 0))
                head = b""
                continue
            if len(head) < keep:
                continue
            self.proxy.counts.truncated += 1
            await down.put((time.monotonic(), head[:keep], 1))
            return
        await down.put((time.monotonic(), b"", 0))


async def _quietly(reading: Coroutine[None, None, None], queue: asyncio.Queue[tuple[float, bytes, int]]) -> None:
    """A reading side whose peer reset the connection ends like one that saw EOF."""
    try:
        await reading
    except (ConnectionError, OSError):
        await queue.put((time.monotonic(), b"", 0))


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _error_response(status: int) -> bytes:
    return b"HTTP/1.1 %d Injected\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        len(_ERROR_BODY),
        _ERROR_BODY,
    )
