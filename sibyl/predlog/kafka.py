"""Kafka sink: records go from a bounded in-memory queue to a Kafka producer on one background thread.

The request path only appends to the queue (no lock, no I/O, no Kafka call); a full queue drops and counts.
Every Kafka client call (construct/connect, metadata, send, poll, flush, close) happens on the sender thread
or its connect helper, through a pluggable producer (predlog/producers.py: kafka-python or confluent-kafka).
Delivery outcomes come back through a queue that the sender thread drains: the producer's I/O thread touches
neither the spool nor the sink's state. The sender owns the broker state:

* connected, spool empty  -> send directly; a failed delivery puts the record in the spool and marks the
                             broker down; so does a record unacknowledged for ack_timeout_s (a hung broker);
* otherwise               -> new records go to the spool behind the ones already there (order kept), and
                             the spool is replayed oldest first in chunks: send, wait for every outcome, then
                             ack the spool (which deletes whole segments). A failed chunk backs off.
* broker down             -> the producer is closed (its I/O thread stopped: kafka-python's spins on the GIL
                             while reconnecting) and a new one is made after a backoff.

Poison records are trimmed or dead-lettered (predlog/poison.py), never retried ahead of the rest. A sender
that fails unexpectedly restarts (counted). close() flushes until its deadline, then spools what is unacked;
what a stuck thread still holds, close() spools itself: nothing queued is lost at exit (docs/predlog.md).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from sibyl.gil import enroll, pace
from sibyl.observability.metrics import Metrics
from sibyl.predlog.losses import Losses, Reason, reason_of
from sibyl.predlog.payload import Item, Pending, item, split_payload, spool_payload
from sibyl.predlog.poison import DeadLetters
from sibyl.predlog.producers import (
    Producer,
    ProducerConfig,
    ProducerFactory,
    ProducerUnavailable,
    RecordRejected,
    Results,
    producer_factory,
)
from sibyl.predlog.queue import RecordQueue
from sibyl.predlog.spool import Spool
from sibyl.predlog.stream import PREDICTIONS, Record, Stream

log = logging.getLogger(__name__)
__all__ = ["KafkaSink", "split_payload", "spool_payload"]  # the spool payload helpers, where callers know them


class KafkaSink:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        spool: Spool,
        metrics: Metrics,
        *,
        client: str = "kafka-python",
        queue_size: int = 100_000,
        batch_max: int = 2_000,
        replay_chunk: int = 1_000,
        ack_timeout_s: float = 3.0,
        backoff_s: tuple[float, float] = (0.5, 2.0),
        poll_s: float = 0.05,  # idle wake-ups cost more than they save (docs/performance.md#kafka-linger-and-poll)
        producer_factory_: ProducerFactory | None = None,
        stream: Stream = PREDICTIONS,
        **producer: Any,  # ProducerConfig's fields (linger_ms, request_timeout_ms, ...): its defaults are the only ones
    ) -> None:
        self.spool = spool
        self.config = ProducerConfig(bootstrap, topic, **producer)
        self._factory = producer_factory_ or producer_factory(client)  # MissingDependency now, at start-up
        self._results: Results = queue.SimpleQueue()
        self._stream, self._noun = stream, stream.noun
        self._dead = DeadLetters(spool.directory, stream.dead_letter)
        self._batch_max, self._replay_chunk, self._poll_s = batch_max, replay_chunk, poll_s
        self._wait_s = (self.config.request_timeout_ms + self.config.linger_ms) / 1000
        self._ack_timeout_s = ack_timeout_s
        self._backoff_min, self._backoff_max = backoff_s
        self._backoff = self._backoff_min
        counters = stream.counters(metrics)
        m = counters.records
        self._sent, self._spooled = m.labels("sent"), m.labels("spooled")
        self._replayed, self._losses = m.labels("replayed"), Losses(counters, log)
        self._queue: RecordQueue[Record] = RecordQueue(queue_size, self._losses.counter("queue"))
        self._trimmed, self._dead_lettered = m.labels("trimmed"), m.labels("dead_letter")
        self._restarts = counters.restarts
        self._depth, self._spool_bytes = counters.queue_depth, counters.spool_bytes
        self._producer: Producer | None = None
        self._healthy = False  # direct sends allowed
        self._connecting = False
        self._discard = False  # set on failure; the sender then closes the producer
        self._finished = False  # the sender thread is done; a late connect must close its producer
        self._finish_lock = threading.Lock()
        self._next_try = 0.0  # monotonic time of the next connect / replay attempt
        self._inflight: dict[int, Pending] = {}  # sent, outcome not known yet (insertion order = send order)
        self._replay_ok: dict[int, bool] = {}  # outcomes of the replay chunk under way
        self._holding: list[Item] = []  # drained from the queue, not yet handed to the producer or the spool
        self._tokens = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None  # set by close(): when the sender must stop flushing

    # ---- PredictionSink ----

    def start(self) -> None:
        if self._thread is not None:
            return
        self.spool.open()
        if self.spool.has_pending():
            log.info("%s spool %s holds records from an earlier run; replaying", self._noun, self.spool.directory)
        self._thread = threading.Thread(target=self._run, name=f"{self._stream.thread}-kafka", daemon=True)
        self._thread.start()

    def submit(self, record: Record) -> None:
        self._queue.submit(record)

    def submit_all(self, records: Sequence[Record]) -> bool:
        """All queued, or none (queue full or closed): for a caller that can retry (outcomes)."""
        return self._queue.offer_all(records)

    def close(self, timeout_s: float = 10.0) -> None:
        """Returns within ~timeout_s; whatever was not acknowledged by then is in the spool (fsynced)."""
        if not self._queue.close():
            return
        self._deadline = time.monotonic() + timeout_s * 0.7
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s * 0.85)
            if self._thread.is_alive():
                log.error("%s sender did not finish in %.1f s; spooling what it holds", self._noun, timeout_s)
        # Whatever the thread left (or still holds, if it is stuck): spooled here. At worst a duplicate, never lost.
        self.spool.open()
        self._spool_held()
        self._to_spool([Pending(*item(r), 0.0, False) for r in self._queue.drain(len(self._queue))])
        self.spool.close()  # fsyncs

    # ---- sender thread ----

    def _run(self) -> None:
        enroll()
        for restart in range(1_000_000):  # bounded; ends on close()
            try:
                self._loop()
                break
            except Exception:  # a bug here must not pass silently, nor end the log: restart, count it
                log.exception("%s sender failed; restarting it (restart %d)", self._noun, restart + 1)
                self._restarts.inc()
                try:
                    self._spool_held()
                except Exception:  # the same bug again must not end the thread (and the log with it)
                    log.exception("%s sender could not spool what it held", self._noun)
                self._discard = True  # start again with a new producer
                self._stop.wait(min(self._backoff_max, self._backoff_min * 2 ** min(restart, 8)))
        try:
            self._shutdown()
        except Exception:
            log.exception("%s shutdown failed; close() spools what is left", self._noun)

    def _loop(self) -> None:
        while not self._stop.is_set():
            busy = self._step()
            self.spool.maybe_sync()
            self._depth.set(len(self._queue))
            self._spool_bytes.set(self.spool.pending_bytes)
            if not busy:
                self._stop.wait(self._poll_s)

    def _step(self) -> bool:
        self._collect()
        if self._inflight and time.monotonic() - next(iter(self._inflight.values())).sent_at > self._ack_timeout_s:
            self._mark_down(f"no acknowledgement in {self._ack_timeout_s:.1f} s")
        if self._discard:
            self._discard_producer()
        if self._producer is None and not self._connecting and time.monotonic() >= self._next_try:
            self._start_connect()
        if self.spool.has_pending() and self._producer is not None and time.monotonic() >= self._next_try:
            self._replay_once()
        if self._producer is None and self._connecting and self._next_try == 0.0:
            return False  # first connect under way and nothing failed yet: keep records in memory, not on disk
        records = self._queue.drain(self._batch_max)
        if records:
            self._send_or_spool([item(r) for r in records])
        if self._producer is not None:
            self._producer.poll(0)
        return bool(records)

    def _send_or_spool(self, items: list[Item]) -> None:
        self._holding = items  # if this raises or hangs, the restart or close() spools them (maybe twice)
        if self._producer is not None and self._healthy and not self.spool.has_pending():
            sent = self._send(items, replay=False)
            items = items[len(sent) :]
        self._to_spool([Pending(k, v, 0.0, False) for k, v in items])
        self._holding = []

    def _spool_held(self) -> None:
        """What a failed or stuck sender held: its unsent batch and the records awaiting an outcome."""
        held, self._holding = self._holding, []
        self._to_spool([Pending(k, v, 0.0, False) for k, v in held])
        self._to_spool([p for p in list(self._inflight.values()) if not p.replay])
        self._inflight.clear()

    def _start_connect(self) -> None:
        self._connecting = True
        threading.Thread(target=self._connect, name=f"{self._stream.thread}-kafka-connect", daemon=True).start()

    def _connect(self) -> None:
        """Runs on its own thread: a producer probing a broker that is down blocks for connect_timeout_ms, and
        the sender must keep moving the queue into the spool meanwhile."""
        try:
            producer = self._factory(self.config, self._results)
        except Exception as exc:  # any client's error: the broker is not usable now
            self._mark_down(f"cannot connect: {exc}")
            self._connecting = False
            return
        with self._finish_lock:
            if self._finished:  # the sender already shut down while we were connecting
                producer.close()
            else:
                log.info("%s connected to Kafka %s", self._noun, self.config.bootstrap)
                self._healthy = not self.spool.has_pending()  # with a backlog, the replay decides
                self._producer = producer
            self._connecting = False

    def _send(self, items: list[Item], replay: bool) -> list[int]:
        """Send in order until the producer cannot take more; the tokens of those handed over."""
        tokens: list[int] = []
        producer = self._producer
        for key, value in items:
            if producer is None:
                break
            pace(self._queue.backlog)  # kafka-python's send runs Python: bounded slices, in the loop's idle gaps
            token = next(self._tokens)
            self._inflight[token] = Pending(key, value, time.monotonic(), replay)
            try:
                producer.send(key, value, token)
            except RecordRejected as exc:
                self._inflight.pop(token, None)
                self._poison(key, value, str(exc))
                if replay:
                    self._replay_ok[token] = True  # handled: the spool may move past it
            except ProducerUnavailable as exc:  # metadata or buffer wait ran out: the broker is gone
                self._inflight.pop(token, None)
                self._mark_down(f"send failed: {exc}")
                break
            tokens.append(token)
        return tokens

    def _collect(self) -> None:
        """Outcomes the producer reported since the last call (from its I/O thread or poll)."""
        failed: list[Pending] = []
        for _ in range(1_000_000):  # bounded: the queue only holds outcomes of records sent
            try:
                token, exc = self._results.get_nowait()
            except queue.Empty:
                break
            pending = self._inflight.pop(token, None)
            if pending is None:
                continue  # already spooled when its producer was discarded
            ok = exc is None
            if isinstance(exc, RecordRejected):
                self._poison(pending.key, pending.value, str(exc))
                ok = True  # handled: trimmed and re-sent, or quarantined
            elif ok and not pending.replay:
                self._sent.inc()
            if pending.replay:
                self._replay_ok[token] = ok
            elif not ok:
                failed.append(pending)
                self._mark_down(f"delivery failed: {exc}")
        self._to_spool(failed)

    def _poison(self, key: bytes, value: bytes, why: str) -> None:
        smaller = self._stream.trim(value)
        if smaller is not None and len(smaller) < self.config.max_request_size:
            self._trimmed.inc()
            log.warning("%s: record %s refused (%s); sending a trimmed copy", self._noun, key, why)
            direct = self._producer is not None and self._healthy and not self.spool.has_pending()
            if not (direct and self._send([(key, smaller)], replay=False)):
                self._to_spool([Pending(key, smaller, 0.0, False)])
        elif self._dead.write(value, why):
            self._dead_lettered.inc()
        else:
            self._losses.count(1, "poison")

    def _replay_once(self) -> None:
        batch = self.spool.read(self._replay_chunk)
        if not batch.payloads:
            return
        self._replay_ok.clear()
        tokens = self._send([split_payload(p) for p in batch.payloads], replay=True)
        wait_until = time.monotonic() + min(self._wait_s, self._ack_timeout_s)
        for _ in range(100_000):  # bounded by wait_until in practice
            if self._producer is None or all(t in self._replay_ok for t in tokens):
                break
            deadline = self._deadline  # set by close() meanwhile: the replay must not outlive it
            if time.monotonic() >= (wait_until if deadline is None else min(wait_until, deadline)):
                break
            self._producer.poll(0.005)
            self._collect()
            if not any(t in self._replay_ok for t in tokens):
                time.sleep(0.002)
        acked = 0
        for token in tokens:
            if not self._replay_ok.get(token, False):
                break
            acked += 1
        for token in tokens:  # still unknown: they stay in the spool (a late ack only makes a duplicate)
            self._inflight.pop(token, None)
        self._replay_ok.clear()
        self.spool.ack(batch, acked)
        self._replayed.inc(acked)
        if acked == len(batch.payloads):
            if not self._healthy and not self.spool.has_pending():
                log.info("%s: Kafka is back; spool replayed", self._noun)
            self._healthy = not self.spool.has_pending() or self._healthy
            self._backoff = self._backoff_min
        else:
            self._mark_down("replay not acknowledged")

    def _to_spool(self, pending: list[Pending]) -> None:
        if not pending:
            return
        reason: Reason = "spool_full"  # what append did not take: over spool_max_bytes
        why = f"full at {self.spool.max_bytes} bytes"
        try:
            written = self.spool.append([spool_payload(p.key, p.value) for p in pending])
        except OSError as exc:  # nothing of the append is kept (spool.py cuts a torn write back)
            written, reason, why = 0, reason_of(exc), f"write failed: {exc}"
        self._spooled.inc(written)
        lost = len(pending) - written
        self._losses.count(lost, reason)
        if lost:
            self._losses.log(lost, f"{self._noun} spool {self.spool.directory} could not take {lost} records ({why})")

    def _mark_down(self, why: str) -> None:
        if self._healthy or self._next_try <= time.monotonic():
            log.warning("%s: Kafka unavailable (%s); spooling to %s", self._noun, why, self.spool.directory)
        self._healthy = False
        self._discard = True  # a producer that lived through an outage can stay wedged: start afresh
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)

    def _discard_producer(self) -> None:
        """Close the producer without waiting; whatever it had not delivered goes to the spool."""
        self._discard = False
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()
        leftovers = [p for p in self._inflight.values() if not p.replay]
        self._inflight.clear()
        self._to_spool(leftovers)
        self._collect()  # outcomes the close reported: ignored (their records are spooled)

    def _shutdown(self) -> None:
        """Send what is queued (after any backlog), wait for acks until the close deadline, spool the rest."""
        deadline = self._deadline if self._deadline is not None else time.monotonic() + 5.0
        if self._producer is None and not self._connecting and time.monotonic() >= self._next_try:
            self._start_connect()  # closed before the first connect even began
        for _ in range(100_000):  # a connect begun just before close: give it until the deadline
            if not self._connecting or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        for _ in range(10_000):  # order: the backlog goes first; bounded by the deadline
            if self._producer is None or not self.spool.has_pending() or time.monotonic() >= deadline:
                break
            if time.monotonic() < self._next_try:
                break  # the broker just failed us: do not spend the deadline retrying
            self._replay_once()
        for _ in range(len(self._queue) // self._batch_max + 2):
            records = self._queue.drain(self._batch_max)
            if not records:
                break
            self._send_or_spool([item(r) for r in records])
        if self._producer is not None:
            self._producer.flush(max(0.0, deadline - time.monotonic()))
            self._collect()
        leftovers = [p for p in self._inflight.values() if not p.replay]
        if leftovers:
            log.warning("%s: %d records unacked at shutdown; spooled", self._noun, len(leftovers))
        self._inflight.clear()
        self._to_spool(leftovers)
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        with self._finish_lock:
            self._finished = True
        self._depth.set(0)
        self._spool_bytes.set(self.spool.pending_bytes)
