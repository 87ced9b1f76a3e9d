"""The Kafka producer behind the sink, pluggable: kafka-python (default) or confluent-kafka (librdkafka).

Every method is called on the sink's sender thread (or, for the constructor, its connect helper): never on
the event loop. Delivery outcomes go to the `results` queue the sink gives, as (token, None) or (token, exc);
the producer's own I/O thread (kafka-python) or `poll` (confluent) only puts to that queue, nothing else.
`send` raises RecordRejected for a record the client or broker refuses for its size or content (poison:
retrying cannot help) and ProducerUnavailable when it cannot queue it now (no metadata, buffer full).
`close` never waits and never leaves a live I/O thread behind; kafka-python's `__del__` (close(timeout=1),
i.e. a flush on whatever thread the garbage collector runs in) is disabled.
"""

from __future__ import annotations

import contextlib
import queue
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sibyl.errors import MissingDependency

Results = queue.SimpleQueue[tuple[int, BaseException | None]]
ClientName = Literal["kafka-python", "confluent"]
CLIENTS: tuple[ClientName, ...] = ("kafka-python", "confluent")


class ProducerUnavailable(Exception):
    """The record could not be queued now (broker unreachable, metadata unknown, buffer full): retry later."""


class RecordRejected(Exception):
    """The client or broker refuses this record itself (too large, invalid): retrying the same bytes cannot help."""


@dataclass(frozen=True)
class ProducerConfig:
    bootstrap: str
    topic: str
    linger_ms: int = 100
    request_timeout_ms: int = 5_000
    delivery_timeout_ms: int = 15_000
    max_block_ms: int = 500
    connect_timeout_ms: int = 3_000
    max_request_size: int = 1024 * 1024
    compression: str = ""  # "" = lz4 if its Python package is there (readers need it too), else gzip

    @property
    def codec(self) -> str:
        if self.compression:
            return self.compression
        import importlib.util

        return "lz4" if importlib.util.find_spec("lz4") is not None else "gzip"

    @property
    def servers(self) -> list[str]:
        return [b.strip() for b in self.bootstrap.split(",") if b.strip()]


class Producer(Protocol):
    def send(self, key: bytes, value: bytes, token: int) -> None:
        """Queue one record; its outcome arrives in `results` as (token, error or None)."""

    def poll(self, timeout_s: float) -> None:
        """Serve delivery callbacks (confluent); a no-op where the client has its own I/O thread."""

    def flush(self, timeout_s: float) -> None:
        """Wait up to timeout_s for every queued record's outcome."""

    def close(self) -> None:
        """Stop now: outcomes not known yet are reported as failures (or never: the sink spools those)."""


ProducerFactory = Callable[[ProducerConfig, Results], Producer]


def producer_factory(client: str) -> ProducerFactory:
    """The adapter for `client`; a missing optional package raises MissingDependency (at start-up)."""
    if client == "kafka-python":
        return KafkaPythonProducer
    if client == "confluent":
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            raise MissingDependency("confluent-kafka", "kafka-fast", "predlog.kafka_client = confluent") from None
        return ConfluentProducer
    raise ValueError(f"unknown predlog.kafka_client {client!r}: use one of {', '.join(CLIENTS)}")


# ---- kafka-python


def _kafka_python_classes() -> tuple[type, type]:
    from kafka import KafkaProducer
    from kafka.partitioner import Partitioner

    # kafka-python ships no types: its classes are Any, and subclassing Any is what strict mypy refuses (misc).
    class Crc32Partitioner(Partitioner):  # type: ignore[misc]
        """A keyed record goes to partition crc32(key) % partitions: librdkafka's default for keyed records
        (consistent_random), so both clients put a prediction on the same partition. kafka-python's own default,
        murmur2 in pure Python, was a large share of its send() (docs/performance.md#kafka-per-record-cost)."""

        def partition(
            self,
            topic: str,
            key: object,
            serialized_key: bytes | None,
            value: object,
            serialized_value: bytes | None,
            cluster: Any,
        ) -> int:
            partitions: set[int] = cluster.partitions_for_topic(topic)
            if serialized_key is None:  # sibyl always keys by prediction id; random, like librdkafka
                return random.choice(sorted(partitions))
            return zlib.crc32(serialized_key) % len(partitions)  # ids are 0..n-1

    class QuietKafkaProducer(KafkaProducer):  # type: ignore[misc]  # kafka-python's classes are Any, as above
        def __del__(self) -> None:  # the sink closes it on its own thread; a GC-time flush could block the loop
            pass

    return QuietKafkaProducer, Crc32Partitioner


class KafkaPythonProducer:
    def __init__(self, config: ProducerConfig, results: Results) -> None:
        self._topic, self._results = config.topic, results
        producer_class, partitioner = _kafka_python_classes()
        self._producer: Any = producer_class(
            bootstrap_servers=config.servers,
            acks="all",
            linger_ms=config.linger_ms,
            batch_size=256 * 1024,  # fewer, larger batches: each full batch wakes the I/O thread (a syscall)
            compression_type=config.codec,
            request_timeout_ms=config.request_timeout_ms,
            delivery_timeout_ms=max(config.delivery_timeout_ms, config.request_timeout_ms + config.linger_ms),
            max_block_ms=config.max_block_ms,
            max_request_size=config.max_request_size,
            bootstrap_timeout_ms=config.connect_timeout_ms,  # else KafkaProducer() waits 30 s for a dead broker
            reconnect_backoff_max_ms=1_000,
            client_id="sibyl-predlog",
            partitioner=partitioner(),
        )

    def send(self, key: bytes, value: bytes, token: int) -> None:
        from kafka.errors import KafkaError

        try:
            future = self._producer.send(self._topic, key=key, value=value)
        except KafkaError as exc:
            if _kafka_python_poison(exc):
                raise RecordRejected(str(exc)) from exc
            raise ProducerUnavailable(str(exc)) from exc
        put = self._results.put
        future.add_callback(lambda _meta: put((token, None)))
        future.add_errback(lambda exc: put((token, RecordRejected(str(exc)) if _kafka_python_poison(exc) else exc)))

    def poll(self, timeout_s: float) -> None:
        pass

    def flush(self, timeout_s: float) -> None:
        from kafka.errors import KafkaError

        with contextlib.suppress(KafkaError):
            self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        from kafka.errors import KafkaError

        sender = getattr(self._producer, "_sender", None)
        if sender is not None:
            sender.force_close()  # its I/O thread exits at its next turn and fails what it still holds
        with contextlib.suppress(KafkaError):
            self._producer.close(timeout=0)  # flush(0) raises while records are pending: suppressed, thread stopped


def _kafka_python_poison(exc: BaseException) -> bool:
    from kafka import errors

    poison = (errors.MessageSizeTooLargeError, errors.RecordListTooLargeError, errors.InvalidRecordError)
    return isinstance(exc, poison)


# ---- confluent-kafka (librdkafka: its I/O threads are C threads that do not hold the GIL)


class ConfluentProducer:
    def __init__(self, config: ProducerConfig, results: Results) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import Producer as RdProducer

        self._topic, self._results = config.topic, results
        self._producer: Any = RdProducer(
            {
                "bootstrap.servers": ",".join(config.servers),
                "acks": "all",
                "linger.ms": config.linger_ms,
                "compression.type": config.codec,
                "request.timeout.ms": config.request_timeout_ms,
                "message.timeout.ms": max(config.delivery_timeout_ms, config.request_timeout_ms + config.linger_ms),
                "message.max.bytes": config.max_request_size,
                "socket.connection.setup.timeout.ms": max(1_000, config.connect_timeout_ms),
                "reconnect.backoff.max.ms": 1_000,
                "client.id": "sibyl-predlog",
            }
        )
        try:  # librdkafka connects lazily: ask for metadata so a dead broker fails the connect, as kafka-python's
            self._producer.list_topics(config.topic, timeout=config.connect_timeout_ms / 1000)
        except KafkaException as exc:
            self.close()
            raise ProducerUnavailable(f"cannot reach {config.bootstrap}: {exc}") from exc

    def send(self, key: bytes, value: bytes, token: int) -> None:
        from confluent_kafka import KafkaException

        put = self._results.put

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                put((token, None))
            else:
                put((token, RecordRejected(str(err)) if _confluent_poison(err) else ProducerUnavailable(str(err))))

        try:
            self._producer.produce(self._topic, value=value, key=key, on_delivery=delivered)
        except BufferError as exc:
            raise ProducerUnavailable(f"librdkafka queue full: {exc}") from exc
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and _confluent_poison(err):
                raise RecordRejected(str(err)) from exc
            raise ProducerUnavailable(str(exc)) from exc

    def poll(self, timeout_s: float) -> None:
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        producer.purge(in_queue=True, in_flight=True, blocking=False)  # fail what it holds, now
        producer.poll(0)  # hand the purge failures to `results`
        producer.close()  # rd_kafka_destroy here, on this thread (nothing left to flush), not when the GC runs


def _confluent_poison(err: Any) -> bool:
    from confluent_kafka import KafkaError

    codes = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.RECORD_LIST_TOO_LARGE}
    return err.code() in codes
