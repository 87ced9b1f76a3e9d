"""One HTTP/1.1 connection of the REST port: uvicorn's httptools protocol with the limits it lacks, so a client
that misbehaves below the request (headers without end, thousands of headers, a request line dripped a byte at a
time, a burst of pipelined requests) costs a bounded amount and is closed with a JSON answer saying why.

Limits (ConnectionLimits; figures in docs/protocols.md, "Connection limits"):
- the request line and headers of one request: at most max_header_bytes (431), at most max_headers fields (431);
- the time from a request's first byte to the end of its headers: at most header_timeout_s (408, then closed:
  slowloris connections do not stay open); a connection that sends nothing is closed after keep_alive_s, as
  between requests;
- a body being read that sends nothing for body_idle_s: 408, closed (the same attack, dripping the body);
- requests parsed ahead of the one being answered (pipelining): at most max_pipelined, else the connection is
  closed (429 only when no answer is owed: an answer cannot overtake an earlier one).

llhttp (httptools) buffers a header field whole before handing it over, so the header budget is kept on the
bytes fed to the parser: a chunk that would cross it is fed only up to the budget. A normal request pays one
comparison per chunk and two timers (headers, body). Each refusal is counted in sibyl_rejected{reason}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024  # request line + headers of one request
    max_headers: int = 100  # header fields of one request
    header_timeout_s: float = 10.0  # first byte of a request to the end of its headers
    body_idle_s: float = 15.0  # no byte of a body being read for this long
    max_pipelined: int = 64  # requests read ahead of the one being answered


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the refusal itself is already set on the protocol."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol within ConnectionLimits; refused(reason) counts a refusal."""

    def __init__(self, *args: Any, limits: ConnectionLimits, refused: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits, self._count_refusal = limits, refused
        self._reading_head = True  # between a request's first byte (or the connection's start) and its headers' end
        self._head_budget = limits.max_header_bytes
        self._header_fields = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0  # loop.time() of the last bytes received
        self._refusal: tuple[int, str, str] | None = None  # (status, reason, message) of a refusal under way

    # ---- the connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        # Nothing sent at all: closed after keep_alive_s, like an idle connection between requests.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        while self._reading_head and len(data) > self._head_budget:  # only a chunk that would cross the budget
            head, data = data[: self._head_budget], data[self._head_budget :]
            self._head_budget = 0
            super().data_received(head)
            if self.transport.is_closing():
                return
            if self._reading_head and self._head_budget == 0:  # still in the same request's headers
                limit = self.limits.max_header_bytes
                self._refuse(431, "http_header_size", f"request line and headers over {limit} bytes; send fewer")
                return
        if self._reading_head:
            self._head_budget -= len(data)
        super().data_received(data)

    # ---- parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_fields = 0
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields > self.limits.max_headers:
            self._refusal = (431, "http_header_count", f"more than {self.limits.max_headers} header fields; send fewer")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_timers()
        self._reading_head = False
        super().on_headers_complete()
        if len(self.pipeline) > self.limits.max_pipelined:
            self._refusal = (429, "http_pipelined", f"more than {self.limits.max_pipelined} pipelined requests")
            raise _Refused
        self._watch_body()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_timers()
        self._reading_head, self._head_budget = True, self.limits.max_header_bytes

    # ---- refusals
    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser stopped at: ours, in JSON, or the refusal a callback set."""
        status, reason, message = self._refusal or (400, "http_malformed", f"malformed HTTP request ({msg})")
        self._refuse(status, reason, message)

    def _watch_body(self) -> None:
        if self._body_timer is None:
            self._last_data = self.loop.time()
            self._body_timer = self.loop.call_later(self.limits.body_idle_s, self._body_idle)

    def _body_idle(self) -> None:
        """Re-armed for the time left while bytes keep coming (one timer per request, not one per chunk), and
        while the request is pipelined: its body is read once the request before it is answered."""
        now, limit = self.loop.time(), self.limits.body_idle_s
        if any(cycle is self.cycle for cycle, _ in self.pipeline):
            self._last_data = now
        idle_s = now - self._last_data
        if idle_s < limit:
            self._body_timer = self.loop.call_later(limit - idle_s, self._body_idle)
            return
        self._body_timer = None
        if not self.transport.is_closing():
            # The app waits for the body and has not answered: this answer is the request's, then closed.
            self._refuse(408, "http_body_timeout", f"no byte of the request body for {limit:g} s", answer=True)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._reading_head and not self.transport.is_closing():
            timeout = self.limits.header_timeout_s
            self._refuse(408, "http_header_timeout", f"headers not complete within {timeout:g} s of the request")

    def _refuse(self, status: int, reason: str, message: str, answer: bool = False) -> None:
        """Answer status with {"error": message} and close. With a response still owed to an earlier request
        the connection is closed without a word (an answer cannot overtake it), unless answer is set."""
        self._count_refusal(reason)
        self._cancel_timers()
        if answer or self.cycle is None or (self.cycle.response_complete and not self.pipeline):
            body = orjson.dumps({"error": message})
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: application/json\r\ncontent-length: ",
                        str(len(body)).encode(),
                        b"\r\nconnection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self.transport.close()

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
