"""Processes that decode big requests, so their Python work never holds the serving process's GIL.

A worker thread does not free the event loop from a big decode: the thread holds the GIL, and every time the loop
thread gives it up (each gRPC or socket call) it waits a switch interval to get it back, so small calls slow down
by several times while a 10,000-row request decodes (docs/performance.md#big-requests-and-the-tail). A request
above `server.decode_process_bytes` is therefore handed, as its bytes, to one of `server.decode_processes`
spawned processes, which parse and decode it and send back the header and the RowBatch.

The pool starts on the first big request, in the background: until it is up, big requests take the worker
thread as before, so no call waits for a process to start and a server that never sees a big request never
starts one. A worker that dies (killed, out of memory) breaks the pool: the calls it held are decoded in a thread
instead (none fails) and the next big request starts a new pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from prometheus_client import Counter

from sibyl.errors import DeadlineExceeded

T = TypeVar("T")
log = logging.getLogger(__name__)


def _ready() -> bool:
    return True


class DecodePool:
    """`await pool.run(fn, args, inline, deadline)`: fn(*args) in a decode process, else inline() (a thread)."""

    def __init__(self, processes: int, min_bytes: int, counted: Counter | None = None) -> None:
        """counted: a counter labelled by where a request was decoded ("process" or "thread")."""
        self.processes, self.min_bytes = processes, min_bytes
        self._in_process: Counter | None = None if counted is None else counted.labels("process")
        self._in_thread: Counter | None = None if counted is None else counted.labels("thread")
        self._executor: ProcessPoolExecutor | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._closed = False

    def takes(self, size: int) -> bool:
        return self.processes > 0 and size > self.min_bytes and not self._closed

    def _executor_if_ready(self) -> ProcessPoolExecutor | None:
        """The pool when it is up; else starts one (in the background) and says None."""
        with self._lock:
            if self._ready and self._executor is not None:
                return self._executor
            if self._executor is None and not self._closed:
                try:
                    context = multiprocessing.get_context("spawn")  # fork would copy gRPC's threads' state
                    executor = ProcessPoolExecutor(self.processes, mp_context=context)
                    warm = [executor.submit(_ready) for _ in range(self.processes)]  # spawns and imports
                except Exception as exc:  # e.g. no process may be started here: decode in threads from now on
                    log.error("cannot start decode processes (%s); big requests are decoded in a thread", exc)
                    self.processes = 0
                    return None
                self._executor = executor
                for future in warm:
                    future.add_done_callback(functools.partial(self._started, executor))
            return None

    def _started(self, executor: ProcessPoolExecutor, future: Future[bool]) -> None:
        error = future.exception()
        with self._lock:
            if self._executor is executor and error is None:
                self._ready = True
        if error is not None:
            log.error("a decode process did not start (%s); big requests are decoded in a thread", error)

    def _broken(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor, self._ready = None, False
        log.warning("a decode process died; its calls are decoded in a thread and a new pool starts")
        executor.shutdown(wait=False, cancel_futures=True)

    async def run(
        self, fn: Callable[..., T], args: tuple[Any, ...], inline: Callable[[], T], deadline: float | None
    ) -> T:
        """fn(*args) in a decode process (fn and its arguments and result must pickle), or `inline` in a worker
        thread while the pool starts or after it broke. deadline: a time.monotonic() instant; past it the call
        raises DeadlineExceeded (a decode not yet started is dropped; one under way finishes unread)."""
        executor = self._executor_if_ready()
        if executor is not None:
            try:
                future = executor.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):  # broken, or shut down by a close racing this call
                if not self._closed:
                    self._broken(executor)
            else:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    return await self._result(future, timeout)
                except BrokenProcessPool:
                    self._broken(executor)
        self._count(self._in_thread)
        return await asyncio.to_thread(inline)

    async def _result(self, future: Future[T], timeout: float | None) -> T:
        try:
            out = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise DeadlineExceeded("deadline passed while decoding; raise the client's timeout") from None
        except BrokenProcessPool:
            raise
        except Exception:  # the request's own error (InvalidArgument ...), raised in the process
            self._count(self._in_process)
            raise
        self._count(self._in_process)
        return out

    @staticmethod
    def _count(child: Counter | None) -> None:
        if child is not None:
            child.inc()

    @property
    def ready(self) -> bool:
        """The processes are up: the next big request goes to one."""
        return self._ready

    def close(self) -> None:
        """No new work; the processes end once their current decode is done (the drain waited for the calls)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
