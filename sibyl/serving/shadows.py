"""Work after the response, on threads, never on the event loop: shadow predictions and prediction records.

Two bounded lanes, each a queue served by its own threads:

* shadows (`concurrency` threads): shed, and counted as shed, when the queue is full or the server is busy;
* records (one thread): what follows every answered call (scores, drift, building the log record, handing it to
  the sink, sampling shadows). Not shed for load; only a full queue drops, counted as dropped log records.

Small shadow batches used to run inline on the loop and `build_record`'s `tolist()` held it for a 10,000-row
record: other calls waited behind both. onnxruntime releases the GIL while it runs, and the record thread
builds large feature lists in slices, so the loop gets the GIL back between them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from sibyl.observability.metrics import Metrics

log = logging.getLogger(__name__)
Job = Callable[[], None]


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

    def pending(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
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

    def stop(self, timeout_s: float) -> list[Job]:
        """Run what is queued within timeout_s, then end the threads; returns the jobs left unrun."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
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


class ShadowRunner:
    def __init__(
        self,
        metrics: Metrics,
        queue_size: int,
        concurrency: int,
        is_busy: Callable[[], bool] = lambda: False,
        record_queue_size: int = 10_000,
    ) -> None:
        self.metrics = metrics
        self._shadows = Lane("sibyl-shadow", queue_size, concurrency)
        self._records = Lane("sibyl-records", record_queue_size, 1)
        self._is_busy = is_busy
        self._dropped = metrics.predlog_records.labels("dropped")

    def start(self) -> None:
        self._shadows.start()
        self._records.start()

    def submit(self, predictor: str, job: Job) -> bool:
        """Queue a shadow job; never waits. False (and counted as shed) when full or the server is busy."""
        if self._is_busy() or not self._shadows.offer(lambda: self._run(predictor, job)):
            self.metrics.shadows.labels(predictor, "shed").inc()
            return False
        return True

    def after_response(self, job: Job, records: int) -> bool:
        """Queue what follows an answered call (it logs `records` records); never waits. False when full: the
        records are counted as dropped."""
        if self._records.offer(_Counted(job, records)):
            return True
        self._dropped.inc(records)
        return False

    def _run(self, predictor: str, job: Job) -> None:
        try:
            job()
            self.metrics.shadows.labels(predictor, "run").inc()
        except Exception:
            self.metrics.shadows.labels(predictor, "failed").inc()
            log.exception("shadow prediction failed for predictor %s", predictor)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish queued work (records first: they sample shadows), bounded by timeout_s, then end the threads."""
        left = await asyncio.to_thread(self._records.stop, timeout_s / 2)
        if left:
            self._dropped.inc(sum(job.records for job in left if isinstance(job, _Counted)))
            log.warning("stopping with %d answered calls not logged", len(left))
        left = await asyncio.to_thread(self._shadows.stop, timeout_s / 2)
        if left:
            log.warning("stopping with %d shadow jobs not run", len(left))


class _Counted:
    """A records-lane job and how many log records it would write (counted as dropped if it never runs)."""

    __slots__ = ("job", "records")

    def __init__(self, job: Job, records: int) -> None:
        self.job, self.records = job, records

    def __call__(self) -> None:
        self.job()
