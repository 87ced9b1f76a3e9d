"""Shadow predictions: run after the response, through a bounded queue, shed (and counted) under load."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sibyl.observability.metrics import Metrics

log = logging.getLogger(__name__)
Job = Callable[[], Awaitable[None]]


class ShadowRunner:
    def __init__(
        self, metrics: Metrics, queue_size: int, concurrency: int, is_busy: Callable[[], bool] = lambda: False
    ) -> None:
        self.metrics = metrics
        self._queue: asyncio.Queue[tuple[str, Job]] = asyncio.Queue(maxsize=queue_size)
        self._concurrency = concurrency
        self._is_busy = is_busy
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"sibyl-shadow-{i}") for i in range(self._concurrency)]

    def submit(self, predictor: str, job: Job) -> bool:
        """Queue a shadow job; never waits. False (and counted as shed) when full or the server is busy."""
        if self._is_busy():
            self.metrics.shadows.labels(predictor, "shed").inc()
            return False
        try:
            self._queue.put_nowait((predictor, job))
        except asyncio.QueueFull:
            self.metrics.shadows.labels(predictor, "shed").inc()
            return False
        return True

    async def _work(self) -> None:
        while True:
            predictor, job = await self._queue.get()
            try:
                await job()
                self.metrics.shadows.labels(predictor, "run").inc()
            except Exception:
                self.metrics.shadows.labels(predictor, "failed").inc()
                log.exception("shadow prediction failed for predictor %s", predictor)
            finally:
                self._queue.task_done()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish queued shadows (bounded by timeout_s), then stop the workers."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            log.warning("stopping with %d shadow jobs not run", self._queue.qsize())
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
