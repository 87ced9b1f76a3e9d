"""The default sink: JSON lines appended to a file by a background thread, in batches.

The request path only appends to a bounded in-memory queue; encoding and writing happen on the writer
thread. Each batch is flushed to the OS (so `tail -f` sees it); close() drains the queue and fsyncs.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import BinaryIO

from sibyl.observability.metrics import Metrics
from sibyl.predlog.jsonl import to_json_line
from sibyl.predlog.queue import RecordQueue
from sibyl.v1.predlog_pb2 import PredictionLog

log = logging.getLogger(__name__)


class FileSink:
    def __init__(
        self,
        path: str | Path,
        metrics: Metrics,
        queue_size: int = 100_000,
        batch_max: int = 2_000,
        poll_s: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self._queue = RecordQueue(queue_size)
        self._batch_max, self._poll_s = batch_max, poll_s
        self._written = metrics.predlog_records.labels("written")
        self._dropped = metrics.predlog_records.labels("dropped")
        self._depth = metrics.predlog_queue_depth
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: BinaryIO | None = None
        self._closed = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self._thread = threading.Thread(target=self._run, name="predlog-file", daemon=True)
        self._thread.start()

    def submit(self, record: PredictionLog) -> None:
        if self._closed or not self._queue.offer(record):
            self._dropped.inc()

    def close(self, timeout_s: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("prediction log file writer did not finish in %.1f s; records may be lost", timeout_s)
                return
        if self._file is not None:
            self._write_all()  # anything submitted between the thread's last drain and _closed
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._write_batch():
                self._stop.wait(self._poll_s)
        self._write_all()

    def _write_all(self) -> None:
        for _ in range(len(self._queue) // self._batch_max + 2):  # bounded: the queue only shrinks here
            if not self._write_batch():
                return

    def _write_batch(self) -> int:
        batch = self._queue.drain(self._batch_max)
        self._depth.set(len(self._queue))
        if not batch or self._file is None:
            return 0
        try:
            self._file.write("".join(to_json_line(r) + "\n" for r in batch).encode())
            self._file.flush()
        except OSError as exc:  # disk full, file removed: keep serving, count the loss
            log.error("prediction log write to %s failed: %s; %d records dropped", self.path, exc, len(batch))
            self._dropped.inc(len(batch))
            return len(batch)
        self._written.inc(len(batch))
        return len(batch)
