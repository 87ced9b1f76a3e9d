"""Kafka sink: records go from a bounded in-memory queue to a KafkaProducer on one background thread.

The request path only appends to the queue (no lock, no I/O); a full queue drops and counts. The sender
thread serializes, sends (key = prediction_id, acks=all, gzip/lz4, linger), and owns the broker state:

* connected, spool empty  -> send directly; a failed delivery (callback) puts the record in the spool
                             and marks the broker down;
* otherwise               -> new records go to the spool behind the ones already there (order kept), and
                             the spool is replayed oldest first in chunks: send, wait for every ack, then
                             ack the spool (which deletes whole segments). A failed chunk backs off.

Start never waits for the broker: the producer is created on a helper thread while the sender spools.
close() sends what is queued, waits for acks until its deadline, and spools whatever is still unacked.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.codec import has_lz4
from kafka.errors import KafkaError

from sibyl.observability.metrics import Metrics
from sibyl.predlog.queue import RecordQueue
from sibyl.predlog.spool import Spool, SpoolBatch
from sibyl.v1.predlog_pb2 import PredictionLog

log = logging.getLogger(__name__)

KEY_LEN = struct.Struct(">H")
ProducerFactory = Callable[..., Any]


def spool_payload(key: bytes, value: bytes) -> bytes:
    """What one spooled record holds: key length (u16) | key | serialized PredictionLog."""
    return KEY_LEN.pack(len(key)) + key + value


def split_payload(payload: bytes) -> tuple[bytes, bytes]:
    (n,) = KEY_LEN.unpack_from(payload)
    return payload[2 : 2 + n], payload[2 + n :]


def compression() -> str:
    return "lz4" if has_lz4() else "gzip"  # gzip is always there (zlib); lz4 only with its package


class KafkaSink:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        spool: Spool,
        metrics: Metrics,
        *,
        queue_size: int = 100_000,
        linger_ms: int = 20,
        batch_max: int = 2_000,
        replay_chunk: int = 1_000,
        request_timeout_ms: int = 5_000,
        delivery_timeout_ms: int = 15_000,
        max_block_ms: int = 2_000,
        connect_timeout_ms: int = 3_000,
        backoff_s: tuple[float, float] = (0.5, 5.0),
        poll_s: float = 0.01,
        producer_factory: ProducerFactory = KafkaProducer,
    ) -> None:
        self.topic, self.spool = topic, spool
        self._producer_config: dict[str, Any] = {
            "bootstrap_servers": [b.strip() for b in bootstrap.split(",") if b.strip()],
            "acks": "all",
            "linger_ms": linger_ms,
            "batch_size": 256 * 1024,  # fewer, larger batches: each full batch wakes the I/O thread (a syscall)
            "compression_type": compression(),
            "request_timeout_ms": request_timeout_ms,
            "delivery_timeout_ms": max(delivery_timeout_ms, request_timeout_ms + linger_ms),
            "max_block_ms": max_block_ms,
            "bootstrap_timeout_ms": connect_timeout_ms,  # else KafkaProducer() waits 30 s for a dead broker
            "reconnect_backoff_max_ms": 1_000,
            "client_id": "sibyl-predlog",
        }
        self._factory = producer_factory
        self._queue = RecordQueue(queue_size)
        self._batch_max, self._replay_chunk, self._poll_s = batch_max, replay_chunk, poll_s
        self._wait_s = (request_timeout_ms + linger_ms) / 1000
        self._backoff_min, self._backoff_max = backoff_s
        self._backoff = self._backoff_min
        m = metrics.predlog_records
        self._sent, self._spooled = m.labels("sent"), m.labels("spooled")
        self._replayed, self._dropped = m.labels("replayed"), m.labels("dropped")
        self._depth, self._spool_bytes = metrics.predlog_queue_depth, metrics.predlog_spool_bytes
        self._producer: Any = None
        self._healthy = False  # direct sends allowed
        self._connecting = False
        self._discard = False  # set on failure (any thread); the sender then closes the producer
        self._finished = False  # the sender thread is done; a late connect must close its producer
        self._finish_lock = threading.Lock()
        self._next_try = 0.0  # monotonic time of the next connect / replay attempt
        self._inflight: dict[int, bytes] = {}  # direct sends awaiting their ack: token -> spool payload
        self._tokens = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._deadline: float | None = None  # set by close(): when the sender must stop flushing
        self._last_drop_log = 0.0

    # ---- PredictionSink ----

    def start(self) -> None:
        if self._thread is not None:
            return
        self.spool.open()
        if self.spool.has_pending():
            log.info("prediction spool %s holds records from an earlier run; replaying", self.spool.directory)
        self._thread = threading.Thread(target=self._run, name="predlog-kafka", daemon=True)
        self._thread.start()

    def submit(self, record: PredictionLog) -> None:
        if self._closed or not self._queue.offer(record):
            self._dropped.inc()

    def close(self, timeout_s: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._deadline = time.monotonic() + timeout_s * 0.9
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("prediction log sender did not finish in %.1f s; unsent records may be lost", timeout_s)

    # ---- sender thread ----

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                busy = self._step()
                self.spool.maybe_sync()
                self._depth.set(len(self._queue))
                self._spool_bytes.set(self.spool.pending_bytes)
                if not busy:
                    self._stop.wait(self._poll_s)
        except Exception:  # a bug here must not pass silently: records would pile up unseen
            log.exception("prediction log sender failed; records now go to the spool only")
        finally:
            self._shutdown()

    def _step(self) -> bool:
        if self._discard:
            self._discard_producer()
        now = time.monotonic()
        if self._producer is None and not self._connecting and now >= self._next_try:
            self._start_connect()
        if self.spool.has_pending() and self._producer is not None and time.monotonic() >= self._next_try:
            self._replay_once()
        if self._producer is None and self._connecting and self._next_try == 0.0:
            return False  # first connect under way and nothing failed yet: keep records in memory, not on disk
        records = self._queue.drain(self._batch_max)
        if records:
            if self._healthy and not self.spool.has_pending():
                self._send_direct(records)
            else:
                self._to_spool([spool_payload(r.prediction_id.encode(), r.SerializeToString()) for r in records])
        return bool(records)

    def _start_connect(self) -> None:
        self._connecting = True
        threading.Thread(target=self._connect, name="predlog-kafka-connect", daemon=True).start()

    def _connect(self) -> None:
        """Runs on its own thread: KafkaProducer() blocks for request_timeout_ms probing a broker that is down,
        and the sender must keep moving the queue into the spool meanwhile."""
        try:
            producer = self._factory(**self._producer_config)
        except KafkaError as exc:
            self._mark_down(f"cannot connect: {exc}")
            self._connecting = False
            return
        with self._finish_lock:
            if self._finished:  # the sender already shut down while we were connecting
                producer.close(timeout=0)
            else:
                log.info("prediction log connected to Kafka %s", ",".join(self._producer_config["bootstrap_servers"]))
                self._healthy = not self.spool.has_pending()  # with a backlog, the replay decides
                self._producer = producer
            self._connecting = False

    def _send_direct(self, records: list[PredictionLog]) -> None:
        for i, record in enumerate(records):
            key, value = record.prediction_id.encode(), record.SerializeToString()
            try:
                future = self._producer.send(self.topic, key=key, value=value)
            except KafkaError as exc:  # metadata or buffer wait ran out: the broker is gone
                self._mark_down(f"send failed: {exc}")
                rest = [spool_payload(r.prediction_id.encode(), r.SerializeToString()) for r in records[i:]]
                self._to_spool(rest)
                return
            token = next(self._tokens)
            self._inflight[token] = spool_payload(key, value)
            future.add_callback(self._on_sent, token).add_errback(self._on_failed, token)

    def _on_sent(self, token: int, _metadata: object) -> None:  # producer I/O thread
        if self._inflight.pop(token, None) is not None:
            self._sent.inc()

    def _on_failed(self, token: int, exc: BaseException) -> None:  # producer I/O thread
        payload = self._inflight.pop(token, None)
        if payload is not None:
            self._mark_down(f"delivery failed: {exc}")
            self._to_spool([payload])

    def _replay_once(self) -> None:
        batch = self.spool.read(self._replay_chunk)
        if not batch.payloads:
            return
        acked = self._deliver(batch)
        self.spool.ack(batch, acked)
        self._replayed.inc(acked)
        if acked == len(batch.payloads):
            if not self._healthy and not self.spool.has_pending():
                log.info("prediction log: Kafka is back; spool replayed")
            self._healthy = not self.spool.has_pending() or self._healthy
            self._backoff = self._backoff_min
        else:
            self._mark_down("replay not acknowledged")

    def _deliver(self, batch: SpoolBatch) -> int:
        """Send a spooled chunk and wait for acks; how many from the start were acked."""
        futures = []
        try:
            for payload in batch.payloads:
                key, value = split_payload(payload)
                futures.append(self._producer.send(self.topic, key=key, value=value))
        except KafkaError:
            pass  # the ones already sent may still be acked below
        deadline = time.monotonic() + self._wait_s
        acked = 0
        for future in futures:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError:
                break
            acked += 1
        return acked

    def _to_spool(self, payloads: list[bytes]) -> None:
        try:
            written = self.spool.append(payloads)
        except OSError as exc:
            log.error("prediction spool write failed: %s", exc)
            written = 0
        self._spooled.inc(written)
        lost = len(payloads) - written
        if lost:
            self._dropped.inc(lost)
            now = time.monotonic()
            if now - self._last_drop_log >= 10.0:  # one line per 10 s, not one per record
                self._last_drop_log = now
                log.error(
                    "prediction spool %s is full (%d bytes): %d records dropped",
                    self.spool.directory,
                    self.spool.max_bytes,
                    lost,
                )

    def _mark_down(self, why: str) -> None:
        if self._healthy or self._next_try <= time.monotonic():
            log.warning("prediction log: Kafka unavailable (%s); spooling to %s", why, self.spool.directory)
        self._healthy = False
        self._discard = True  # a producer that lived through an outage can stay wedged: start afresh
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)

    def _discard_producer(self) -> None:
        """Close the producer without waiting; whatever it had not delivered goes to the spool."""
        self._discard = False
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                producer.close(timeout=0)
        leftovers = [p for p in (self._inflight.pop(t, None) for t in list(self._inflight)) if p is not None]
        self._to_spool(leftovers)

    def _shutdown(self) -> None:
        """Send what is queued (after any backlog), wait for acks until the close deadline, spool the rest."""
        deadline = self._deadline if self._deadline is not None else time.monotonic() + 5.0
        if self._producer is None and not self._connecting and time.monotonic() >= self._next_try:
            self._start_connect()  # closed before the first connect even began
        for _ in range(100_000):  # a connect begun just before close: give it until the deadline
            if not self._connecting or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        for _ in range(10_000):  # order: the backlog goes first; bounded by the deadline in practice
            if self._producer is None or not self.spool.has_pending() or time.monotonic() >= deadline:
                break
            if time.monotonic() < self._next_try:
                break  # the broker just failed us: do not spend the deadline retrying
            self._replay_once()
        for _ in range(len(self._queue) // self._batch_max + 2):
            records = self._queue.drain(self._batch_max)
            if not records:
                break
            if self._producer is not None and self._healthy and not self.spool.has_pending():
                self._send_direct(records)
            else:
                self._to_spool([spool_payload(r.prediction_id.encode(), r.SerializeToString()) for r in records])
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            leftovers = [p for p in (self._inflight.pop(t, None) for t in list(self._inflight)) if p is not None]
            if leftovers:
                log.warning("prediction log: %d records unacked at shutdown; spooled", len(leftovers))
                self._to_spool(leftovers)
            with contextlib.suppress(KafkaError):
                self._producer.close(timeout=0)
        with self._finish_lock:
            self._finished = True
        self._depth.set(0)
        self.spool.close()
        self._spool_bytes.set(self.spool.pending_bytes)
