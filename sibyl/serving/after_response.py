"""Work after the response, on threads, never on the event loop: what follows every answered call (scores, drift,
the prediction log record, metric flushes, spans, sampling shadows) and the shadow predictions themselves.

Two bounded lanes, each a queue served by its own threads:

* shadows (`concurrency` threads): shed, and counted as shed, when the queue is full or the server is busy;
* records (one thread, `BatchLane`): what follows every answered call (scores, drift, building the log record,
  handing it to the sink, sampling shadows, tracing spans; after each batch, the queued metric updates). Not
  shed for load; only a full queue drops, counted as dropped log records. The request path appends to a deque
  (no lock) and wakes the thread only when it sleeps; the thread then lingers `linger_s` so the calls of a busy
  server are handled in batches, not with one wake-up (a condition variable, a GIL hand-off) each.

Small shadow batches used to run inline on the loop and `build_record`'s `tolist()` held it for a 10,000-row
record: other calls waited behind both. onnxruntime releases the GIL while it runs, and records take their
feature values as packed bytes (serving.records), so no step holds the GIL for long.

Small calls' follow-ups (at most `inline_rows` rows, server.followup_inline_rows) skip the lane: they run on the
event loop, queued with call_soon behind the response, in the gap before the next call is read. The records lane
ran them ~20 ms later in a batch, and a call that arrived meanwhile waited for the GIL until the batch was done:
at one call at a time that batch was most of p99 (docs/performance.md#follow-ups-on-the-loop). On the loop the
same work costs the same CPU and nobody waits for a hand-off. Their queued metric updates are flushed when no
other inline follow-up is queued (the end of a burst: a quiet server flushes after every call), and every
`INLINE_FLUSH_EVERY` jobs within a long burst: one flush of 32 calls' updates held the loop ~0.2 ms, long enough
to delay the next call, and that was the 1-row p99 at one call at a time (docs/performance.md#flush-per-burst).
Flushed promptly, a scrape of another worker sees them at once. Big calls keep the lane: their records would hold
the loop for milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from sibyl.gil import enroll, pace
from sibyl.observability.metrics import Metrics

log = logging.getLogger(__name__)
Job = Callable[[], None]
RECORDS_LINGER_S = 0.020
INLINE_FLUSH_EVERY = 32  # the most follow-ups run on the loop between two flushes of their metric updates


class Lane:
    """A bounded queue of jobs and the threads that run them, oldest first."""

    def __init__(self, name: str, size: int, threads: int) -> None:
        self.name, self.size = name, size
        self._queue: queue.Queue[Job | None] = queue.Queue()  # bounded in offer(): stop markers always fit
        self._count = threads
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True) for i in range(self._count)
        ]
        for thread in self._threads:
            thread.start()

    def offer(self, job: Job) -> bool:
        """Queue a job; never waits. False when the queue is full."""
        if self._queue.qsize() >= self.size:
            return False
        self._queue.put_nowait(job)
        return True

    def _work(self) -> None:
        enroll()
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except Exception:  # a job counts its own failures; this only keeps the thread alive
                log.exception("%s: job failed", self.name)
            finally:
                self._queue.task_done()
            pace(self._queue.qsize() / self.size)

    def stop(self, timeout_s: float) -> list[Job]:
        """Run what is queued within timeout_s, then end the threads; returns the jobs left unrun."""
        done = threading.Event()

        def wait_for_queue() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait_for_queue, daemon=True).start()
        finished = done.wait(timeout_s)
        left: list[Job] = []
        if not finished:
            while True:  # take out what is left so the stop markers below get in
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._queue.task_done()
                if job is not None:
                    left.append(job)
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(max(0.1, timeout_s))
        self._threads = []
        return left


class BatchLane:
    """One thread running jobs from a bounded deque, oldest first; woken only when it sleeps, then it lingers
    `linger_s` and runs everything queued, so under load one wake-up serves many jobs."""

    FLUSH_EVERY = 256  # jobs between after_batch calls when the deque never empties

    def __init__(
        self, name: str, size: int, linger_s: float = 0.002, after_batch: Callable[[], object] | None = None
    ) -> None:
        self.name, self.size, self.linger_s = name, size, linger_s
        self._after_batch = after_batch  # run when the deque is empty (and every FLUSH_EVERY jobs)
        self._jobs: deque[Job] = deque()
        self._wake = threading.Event()
        self._idle = False  # the thread waits on _wake (set by the request path only then)
        self._closing = False  # stop(): run what is queued, then end
        self._abandon = False  # stop() timed out: end after the current job
        self.wakeups = 0  # times the thread was woken from sleep (tests; a busy server's batching)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._closing = self._abandon = False
        self._thread = threading.Thread(target=self._work, name=f"{self.name}-0", daemon=True)
        self._thread.start()

    def offer(self, job: Job) -> bool:
        """Queue a job; never waits. False when the queue is full."""
        if len(self._jobs) >= self.size:
            return False
        self._jobs.append(job)
        if self._idle:  # read after the append: the thread re-checks the deque after it sets _idle
            self._idle = False
            self._wake.set()
        return True

    def _work(self) -> None:
        enroll()
        jobs = self._jobs
        done = 0
        while not self._abandon:
            if not jobs or done >= self.FLUSH_EVERY:
                done = 0
                self._batch_done()
            if not jobs:
                if self._closing:
                    return
                self._idle = True
                if not jobs and not self._closing:  # an offer between the check and _idle woke nobody
                    self._wake.wait()
                self._idle = False
                self._wake.clear()
                self.wakeups += 1
                if self.linger_s and not self._closing:
                    time.sleep(self.linger_s)  # let a busy server's calls gather: one wake-up for all of them
                continue
            job = jobs.popleft()
            done += 1
            try:
                job()
            except Exception:  # a job counts its own failures; this only keeps the thread alive
                log.exception("%s: job failed", self.name)
            pace(len(jobs) / self.size)

    def _batch_done(self) -> None:
        if self._after_batch is not None:
            try:
                self._after_batch()
            except Exception:
                log.exception("%s: after-batch hook failed", self.name)

    def stop(self, timeout_s: float) -> list[Job]:
        """Run what is queued within timeout_s, then end the thread; returns the jobs left unrun."""
        thread, self._thread = self._thread, None
        if thread is None:
            return []
        self._closing = True
        self._wake.set()
        thread.join(timeout_s)
        if thread.is_alive():
            self._abandon = True
            thread.join(0.1)
        left = list(self._jobs)
        self._jobs.clear()
        return left


class AfterResponse:
    """The two after-response lanes: `submit_followup` for every answered call, `submit_shadow` for shadows."""

    def __init__(
        self,
        metrics: Metrics,
        queue_size: int,
        concurrency: int,
        is_busy: Callable[[], bool] = lambda: False,
        record_queue_size: int = 10_000,
        inline_rows: int = 0,
    ) -> None:
        self.metrics = metrics
        self.inline_rows = inline_rows  # follow-ups of calls this small run on the event loop; 0: never
        self._inline_queued = 0  # queued on the loop, not run yet (stop() waits for them)
        self._inline_unflushed = 0  # run on the loop since the last flush of the queued metric updates
        self._shadows = Lane("sibyl-shadow", queue_size, concurrency)
        # After each batch of answered calls, their queued metric updates (observability.deferred) are applied.
        # Lingering 20 ms, not 2: at high call rates a wake-up and GIL hand-off for every few calls cost more
        # than their work (docs/performance.md#records-lane).
        # Records, shadows and metric updates then start up to 20 ms after the response; a scrape still flushes.
        self._records = BatchLane(
            "sibyl-records", record_queue_size, linger_s=RECORDS_LINGER_S, after_batch=metrics.deferred.flush
        )
        self._is_busy = is_busy
        self._dropped = metrics.predlog_records.labels("dropped")

    def start(self) -> None:
        self._shadows.start()
        self._records.start()

    def submit_shadow(self, predictor: str, job: Job) -> bool:
        """Queue a shadow job; never waits. False (and counted as shed) when full or the server is busy."""
        if self._is_busy() or not self._shadows.offer(lambda: self._run(predictor, job)):
            self.metrics.shadows.labels(predictor, "shed").inc()
            return False
        return True

    def submit_followup(self, job: Job, records: int, rows: int | None = None) -> bool:
        """Queue what follows an answered call of `rows` rows (it logs `records` records); never waits. On the
        event loop when the call is small (`inline_rows`) and this runs on one, else on the records lane. False when
        the lane is full: the records are counted as dropped."""
        if rows is not None and rows <= self.inline_rows:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on an event loop (a thread of the embedded Predictor's caller): the lane
                pass
            else:
                self._inline_queued += 1
                loop.call_soon(self._run_inline, job)
                return True
        if self._records.offer(_Followup(job, records)):
            return True
        self._dropped.inc(records)
        return False

    def _run_inline(self, job: Job) -> None:
        """A small call's follow-up, on the event loop after its response (call_soon)."""
        self._inline_queued -= 1
        try:
            job()
        except Exception:  # a job counts its own failures; this only keeps the loop's callback quiet
            log.exception("after-response job failed on the event loop")
        self._inline_unflushed += 1
        if not self._inline_queued or self._inline_unflushed >= INLINE_FLUSH_EVERY:
            self._flush_inline()

    def _flush_inline(self) -> None:
        """Apply the queued metric updates of the follow-ups run on the loop (at the end of a burst of them, and
        every INLINE_FLUSH_EVERY within one)."""
        self._inline_unflushed = 0
        self.metrics.deferred.flush()

    def _run(self, predictor: str, job: Job) -> None:
        try:
            job()
            self.metrics.shadows.labels(predictor, "run").inc()
        except Exception:
            self.metrics.shadows.labels(predictor, "failed").inc()
            log.exception("shadow prediction failed for predictor %s", predictor)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish queued work (records first: they sample shadows), bounded by timeout_s, then end the threads."""
        deadline = time.monotonic() + timeout_s / 4
        while self._inline_queued and time.monotonic() < deadline:  # follow-ups queued on this loop run first
            await asyncio.sleep(0)
        self._flush_inline()
        left = await asyncio.to_thread(self._records.stop, timeout_s / 2)
        if left:
            self._dropped.inc(sum(job.records for job in left if isinstance(job, _Followup)))
            log.warning("stopping with %d answered calls not logged", len(left))
        left = await asyncio.to_thread(self._shadows.stop, timeout_s / 2)
        if left:
            log.warning("stopping with %d shadow jobs not run", len(left))


class _Followup:
    """A follow-up job (records lane) and how many log records it would write (counted as dropped if it never runs)."""

    __slots__ = ("job", "records")

    def __init__(self, job: Job, records: int) -> None:
        self.job, self.records = job, records

    def __call__(self) -> None:
        self.job()
