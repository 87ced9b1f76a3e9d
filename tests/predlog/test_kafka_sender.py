"""The Kafka sink's sender thread with a fake producer (unit level): which thread touches the spool, poison
records in the replay, a sender that crashes, a stuck sender at close. The same paths run against real
tansu in test_kafka.py / test_poison.py and through `sibyl serve` in tests/faults/."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sibyl.observability.metrics import Metrics
from sibyl.predlog.kafka import KafkaSink, split_payload
from sibyl.predlog.producers import ProducerConfig, ProducerUnavailable, RecordRejected, Results
from sibyl.predlog.spool import Spool
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.kafkaread import count, wait_for

LIMIT = 10_000  # the fake broker refuses records larger than this


class FakeProducer:
    """Acks (or fails) each record from its own 'I/O thread', like kafka-python; refuses large ones."""

    def __init__(
        self, config: ProducerConfig, results: Results, fail: bool = False, crash_first: int = 0, silent: bool = False
    ) -> None:
        self.results, self.fail, self.crash_first, self.silent = results, fail, crash_first, silent
        self.delivered: list[PredictionLog] = []
        self.block = threading.Event()  # set: send blocks until unblocked (a wedged client)
        self.unblock = threading.Event()

    def send(self, key: bytes, value: bytes, token: int) -> None:
        if self.crash_first:
            self.crash_first -= 1
            raise RuntimeError("a bug in the client")
        if self.block.is_set():
            self.unblock.wait(30)
        if len(value) > LIMIT:
            raise RecordRejected(f"{len(value)} bytes is over {LIMIT}")
        if self.silent:  # a hung broker: accepted, never answered
            return
        outcome: BaseException | None = ProducerUnavailable("broker gone") if self.fail else None
        if outcome is None:
            self.delivered.append(PredictionLog.FromString(value))
        threading.Thread(target=self.results.put, args=((token, outcome),), name="fake-io").start()

    def poll(self, timeout_s: float) -> None:
        pass

    def flush(self, timeout_s: float) -> None:
        time.sleep(min(timeout_s, 0.05))

    def close(self) -> None:
        pass


def sink_with(tmp_path: Path, producer: dict[str, FakeProducer], **kw: object) -> tuple[KafkaSink, Metrics]:
    """A sink whose connect makes one FakeProducer (kept in producer["p"]) with the given behaviour."""
    metrics = Metrics()
    options = {k: kw.pop(k) for k in ("fail", "crash_first", "silent") if k in kw}

    def factory(config: ProducerConfig, results: Results) -> FakeProducer:
        producer["p"] = FakeProducer(config, results, **options)  # type: ignore[arg-type]
        return producer["p"]

    spool = Spool(tmp_path / "spool", 1 << 26)
    sink = KafkaSink("fake:1", "t", spool, metrics, producer_factory_=factory, backoff_s=(0.05, 0.1), **kw)  # type: ignore[arg-type]
    return sink, metrics


def spooled_keys(directory: Path) -> set[str]:
    """Every key in the spool at `directory` (all segments)."""
    spool = Spool(directory, 1 << 26)
    spool.open()
    keys: set[str] = set()
    for _ in range(1_000):
        batch = spool.read(10_000)
        if not batch.payloads:
            break
        keys |= {split_payload(p)[0].decode() for p in batch.payloads}
        spool.ack(batch)
    spool.close()
    return keys


def record(i: int, features: int = 0) -> PredictionLog:
    return PredictionLog(prediction_id=f"id-{i}", predictor="p", scores=[0.5], feature_values=[1.0] * features)


def test_failed_deliveries_are_spooled_by_the_sender_thread_not_the_io_thread(tmp_path: Path) -> None:
    """Before: the producer's I/O thread ran _mark_down and a spool append (with fsync) per failed record."""
    producer: dict[str, FakeProducer] = {}
    sink, metrics = sink_with(tmp_path, producer, fail=True)
    appenders: list[str] = []
    append = sink.spool.append

    def recording_append(payloads: list[bytes]) -> int:
        appenders.append(threading.current_thread().name)
        return append(payloads)

    sink.spool.append = recording_append  # type: ignore[method-assign]
    sink.start()
    wait_for(lambda: "p" in producer, 5, "the fake producer")
    for i in range(50):
        sink.submit(record(i))
    wait_for(lambda: count(metrics, "spooled") >= 50, 5, "failed records spooled")
    sink.close(2)
    assert appenders and set(appenders) <= {"predlog-kafka", "MainThread"}, appenders  # never "fake-io"
    assert count(metrics, "dropped") == 0


def test_poison_record_in_the_spool_is_trimmed_and_does_not_block_the_rest(tmp_path: Path) -> None:
    """Before: a record the broker refused went back to the spool and was retried first, forever."""
    spool = Spool(tmp_path / "spool", 1 << 26)
    spool.open()
    from sibyl.predlog.kafka import spool_payload

    backlog = [record(0), record(1, features=5_000), record(2)]  # the middle one is ~20 KB: refused
    spool.append([spool_payload(r.prediction_id.encode(), r.SerializeToString()) for r in backlog])
    spool.close()
    producer: dict[str, FakeProducer] = {}
    sink, metrics = sink_with(tmp_path, producer)
    sink.start()
    wait_for(lambda: count(metrics, "replayed") >= 3, 5, "the backlog replayed past the poison record")
    for i in range(3, 6):
        sink.submit(record(i))
    wait_for(lambda: len(producer["p"].delivered) >= 6, 5, "new records and the trimmed one delivered")
    sink.close(2)
    got = {r.prediction_id: r for r in producer["p"].delivered}
    assert sorted(got) == [f"id-{i}" for i in range(6)]
    assert got["id-1"].trimmed and not got["id-1"].feature_values and list(got["id-1"].scores) == [0.5]
    assert not got["id-0"].trimmed
    assert count(metrics, "trimmed") == 1 and count(metrics, "dead_letter") == 0


def test_a_crashing_sender_is_restarted_and_counted(tmp_path: Path) -> None:
    """Before: any exception other than KafkaError ended the sender thread; records then piled up and dropped."""
    producer: dict[str, FakeProducer] = {}
    sink, metrics = sink_with(tmp_path, producer, crash_first=1)
    sink.start()
    wait_for(lambda: "p" in producer, 5, "the fake producer")
    for i in range(20):
        sink.submit(record(i))
    wait_for(lambda: metrics.predlog_sender_restarts._value.get() >= 1, 5, "a restart")
    for i in range(20, 40):
        sink.submit(record(i))
    sink.close(5)
    delivered = {r.prediction_id for p in [producer["p"]] for r in p.delivered}
    spooled = spooled_keys(tmp_path / "spool")
    assert {f"id-{i}" for i in range(40)} <= delivered | spooled  # nothing lost across the restart
    assert count(metrics, "dropped") == 0
    assert metrics.predlog_sender_restarts._value.get() == 1


def test_close_spools_the_queue_when_the_sender_is_stuck(tmp_path: Path) -> None:
    """Before: close() gave up on a stuck sender and the records still queued in memory were lost at exit."""
    producer: dict[str, FakeProducer] = {}
    sink, _ = sink_with(tmp_path, producer, batch_max=10)
    sink.start()
    wait_for(lambda: "p" in producer, 5, "the fake producer")
    producer["p"].block.set()  # the next send never returns (until the end of the test)
    for i in range(200):
        sink.submit(record(i))
    try:
        sink.close(1.0)
        spooled = spooled_keys(tmp_path / "spool")
    finally:
        producer["p"].unblock.set()
    assert {f"id-{i}" for i in range(200)} <= spooled  # the stuck sender's batch too (close spools what it holds)


def test_shutdown_replay_against_a_hung_broker_ends_within_close(tmp_path: Path) -> None:
    """Before: on SIGTERM the sender's replay waited request_timeout (5 s) per chunk for acks, past close()'s
    join, so close() returned with the thread still replaying and the process exited under it."""
    from sibyl.predlog.kafka import spool_payload

    spool = Spool(tmp_path / "spool", 1 << 26)
    spool.open()
    spool.append([spool_payload(f"b-{i}".encode(), record(i).SerializeToString()) for i in range(100)])
    spool.close()
    producer: dict[str, FakeProducer] = {}
    sink, metrics = sink_with(tmp_path, producer, silent=True, request_timeout_ms=30_000)
    sink.start()
    wait_for(lambda: "p" in producer, 5, "the fake producer")
    for i in range(100, 150):
        sink.submit(record(i))
    sink.close(1.0)
    assert sink._thread is not None and not sink._thread.is_alive()  # done before close() returned
    kept = spooled_keys(tmp_path / "spool")
    assert {f"b-{i}" for i in range(100)} | {f"id-{i}" for i in range(100, 150)} <= kept
    assert count(metrics, "dropped") == 0
