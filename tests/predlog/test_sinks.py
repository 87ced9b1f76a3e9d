"""File sink, null sink, factory and the Kafka sink with no broker at all (everything lands in the spool)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from sibyl.config import PredlogSettings
from sibyl.observability.metrics import Metrics
from sibyl.predlog import NullSink, build_sink
from sibyl.predlog import file as file_module
from sibyl.predlog.file import FileSink, write_lines
from sibyl.predlog.jsonl import from_json_line, to_json_line
from sibyl.predlog.kafka import KafkaSink, split_payload, spool_payload
from sibyl.predlog.queue import RecordQueue
from sibyl.predlog.spool import Spool
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.servers import free_port


def rec(i: int) -> PredictionLog:
    r = PredictionLog(prediction_id=f"id-{i}", predictor="p", model="m", version="1", num_rows=1, scores=[0.25])
    r.context["store_id"] = "7"
    return r


def count(metrics: Metrics, outcome: str) -> float:
    return metrics.predlog_records.labels(outcome)._value.get()


def test_json_line_round_trip_is_compact() -> None:
    line = to_json_line(rec(3))
    assert "\n" not in line and ": " not in line
    assert json.loads(line)["prediction_id"] == "id-3"  # proto field names, greppable
    assert from_json_line(line) == rec(3)


class Drops:
    def __init__(self) -> None:
        self.count = 0.0

    def inc(self, amount: float = 1) -> None:
        self.count += amount


def test_queue_bound_and_order() -> None:
    q = RecordQueue(3, Drops())
    assert [q.offer(rec(i)) for i in range(5)] == [True, True, True, False, False]
    assert [r.prediction_id for r in q.drain(2)] == ["id-0", "id-1"]
    assert q.offer(rec(9))
    assert [r.prediction_id for r in q.drain(10)] == ["id-2", "id-9"]
    with pytest.raises(ValueError, match="at least 1"):
        RecordQueue(0, Drops())


def test_submit_counts_what_a_full_or_closed_queue_refuses() -> None:
    drops = Drops()
    q = RecordQueue(2, drops)
    for i in range(3):
        q.submit(rec(i))
    assert len(q) == 2 and drops.count == 1  # full
    assert q.close() and not q.close()  # a sink's close runs once
    q.submit(rec(3))
    assert len(q) == 2 and drops.count == 2  # closed


def test_file_sink_writes_every_record_once(tmp_path: Path) -> None:
    metrics = Metrics()
    path = tmp_path / "logs" / "p.jsonl"
    sink = FileSink(path, metrics, batch_max=7)
    sink.start()
    for i in range(100):
        sink.submit(rec(i))
    sink.close()
    sink.close()  # idempotent
    lines = path.read_text().splitlines()
    assert [from_json_line(line).prediction_id for line in lines] == [f"id-{i}" for i in range(100)]
    assert count(metrics, "written") == 100
    sink.submit(rec(100))  # after close: counted, not raised
    assert count(metrics, "dropped") == 1


def test_file_sink_writes_large_records_in_chunks_whole_and_in_order(tmp_path: Path) -> None:
    """Records of ~20 KB (100 rows x 16 features): a batch spans several 64 KB writes."""
    records = []
    for i in range(40):
        r = rec(i)
        r.feature_names.extend(f"f{j}" for j in range(16))
        r.feature_values.extend(float(i * 1_600 + j) / 7 for j in range(1_600))
        records.append(r)
    path = tmp_path / "p.jsonl"
    sink = FileSink(path, Metrics(), batch_max=1_000)
    for r in records:  # queued before the writer starts: one batch
        sink.submit(r)
    sink.start()
    sink.close()
    assert path.stat().st_size > 4 * file_module._CHUNK_BYTES
    assert [from_json_line(line) for line in path.read_bytes().splitlines()] == records


def test_write_lines_writes_more_lines_than_one_writev_takes(tmp_path: Path) -> None:
    lines = [f"{i}\n".encode() for i in range(3 * file_module._IOV_MAX + 5)]
    path = tmp_path / "lines"
    with path.open("ab") as out:
        write_lines(out.fileno(), lines)
    assert path.read_bytes() == b"".join(lines)


def test_write_lines_goes_on_after_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """writev and write may each take fewer bytes than asked (a signal, a nearly full disk): nothing is lost or
    written twice."""
    real_writev, real_write = file_module.os.writev, file_module.os.write

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        return real_writev(fd, [b"".join(buffers)[:7]])

    def short_write(fd: int, data: memoryview) -> int:
        return real_write(fd, data[:3])

    monkeypatch.setattr(file_module.os, "writev", short_writev)
    monkeypatch.setattr(file_module.os, "write", short_write)
    lines = [to_json_line(rec(i)).encode() + b"\n" for i in range(5)]
    path = tmp_path / "lines"
    with path.open("ab") as out:
        write_lines(out.fileno(), lines)
    assert path.read_bytes() == b"".join(lines)


def test_file_sink_appends_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    for run in range(2):
        sink = FileSink(path, Metrics())
        sink.start()
        sink.submit(rec(run))
        sink.close()
    assert len(path.read_text().splitlines()) == 2


def test_file_sink_full_queue_drops_and_counts(tmp_path: Path) -> None:
    metrics = Metrics()
    sink = FileSink(tmp_path / "p.jsonl", metrics, queue_size=5)  # not started: nothing drains
    for i in range(8):
        sink.submit(rec(i))
    assert count(metrics, "dropped") == 3
    sink.start()
    sink.close()
    assert count(metrics, "written") == 5


def test_file_sink_encodes_on_the_submitting_thread_and_only_what_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread only writes (no batch of encodes holding the GIL): each line is made by submit, on the
    caller's thread, and a record the full queue refuses is counted, not encoded."""
    encoded_on: list[str] = []
    sink = FileSink(tmp_path / "p.jsonl", Metrics(), queue_size=3)  # not started: nothing drains
    json_line = sink._stream.json_line

    def spy(record: PredictionLog) -> bytes:
        encoded_on.append(threading.current_thread().name)
        return json_line(record)

    monkeypatch.setattr(sink, "_stream", dataclasses.replace(sink._stream, json_line=spy))
    for i in range(5):
        sink.submit(rec(i))
    assert encoded_on == [threading.current_thread().name] * 3
    sink.start()
    sink.close()
    assert encoded_on == [threading.current_thread().name] * 3  # writing encoded nothing more
    lines = (tmp_path / "p.jsonl").read_bytes().splitlines()
    assert [from_json_line(line).prediction_id for line in lines] == ["id-0", "id-1", "id-2"]


def test_build_sink_picks_by_setting(tmp_path: Path) -> None:
    metrics = Metrics()
    assert isinstance(build_sink(PredlogSettings(sink="none"), metrics), NullSink)
    assert isinstance(build_sink(PredlogSettings(path=str(tmp_path / "x.jsonl")), metrics), FileSink)
    kafka = build_sink(PredlogSettings(sink="kafka", spool_dir=str(tmp_path / "spool"), queue_size=9), metrics)
    assert isinstance(kafka, KafkaSink)
    assert kafka.config.linger_ms == 100  # the default: fewer, larger produce requests at low rates
    tuned = PredlogSettings(sink="kafka", spool_dir=str(tmp_path / "spool"), kafka_linger_ms=5)
    tuned_sink = build_sink(tuned, metrics)
    assert isinstance(tuned_sink, KafkaSink) and tuned_sink.config.linger_ms == 5
    null = NullSink()
    null.start()
    null.submit(rec(1))
    null.close()


def test_spool_payload_keeps_key_and_value() -> None:
    value = rec(1).SerializeToString()
    assert split_payload(spool_payload(b"id-1", value)) == (b"id-1", value)


def test_kafka_sink_with_no_broker_spools_everything_and_closes(tmp_path: Path) -> None:
    metrics = Metrics()
    spool = Spool(tmp_path / "spool", 1 << 20)
    dead = f"127.0.0.1:{free_port()}"
    sink = KafkaSink(dead, "t", spool, metrics, connect_timeout_ms=200, backoff_s=(0.1, 0.2))
    sink.start()  # returns although nothing listens
    slowest = 0.0
    for i in range(300):
        t0 = time.perf_counter()
        sink.submit(rec(i))
        slowest = max(slowest, time.perf_counter() - t0)
    sink.close(5)
    assert count(metrics, "spooled") == 300
    assert count(metrics, "sent") == count(metrics, "dropped") == 0
    again = Spool(tmp_path / "spool", 1 << 20)
    again.open()
    batch = again.read(1000)
    assert [PredictionLog.FromString(split_payload(p)[1]).prediction_id for p in batch.payloads] == [
        f"id-{i}" for i in range(300)
    ]
    print(f"\nslowest submit with the broker down: {slowest * 1e6:.1f} us")


def test_kafka_sink_full_spool_drops_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    spool = Spool(tmp_path / "spool", max_bytes=1024)
    dead = f"127.0.0.1:{free_port()}"
    sink = KafkaSink(dead, "t", spool, metrics, connect_timeout_ms=200)
    sink.start()
    for i in range(100):
        sink.submit(rec(i))
    sink.close(5)
    spooled, dropped = count(metrics, "spooled"), count(metrics, "dropped")
    assert spooled > 0 and dropped > 0 and spooled + dropped == 100
    assert "could not take" in caplog.text
    assert sum(p.stat().st_size for p in (tmp_path / "spool").glob("*.spool")) <= 1024
