"""`sibyl predlog tail` over a JSONL file and a spool (Kafka: tests/predlog/test_kafka_throughput.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from sibyl.cli.main import main
from sibyl.observability.metrics import Metrics
from sibyl.predlog.file import FileSink
from sibyl.predlog.kafka import KafkaSink
from sibyl.predlog.spool import Spool
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.servers import free_port


def write_log(path: Path, n: int) -> None:
    sink = FileSink(path, Metrics())
    sink.start()
    for i in range(n):
        sink.submit(PredictionLog(prediction_id=f"p{i % 4}", model="m", scores=[float(i)]))
    sink.close()


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_last_n_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path / "p.jsonl", 20)
    assert main(["predlog", "tail", "--file", str(tmp_path / "p.jsonl"), "-n", "3"]) == 0
    assert [r["scores"][0] for r in printed(capsys)] == [17.0, 18.0, 19.0]


def test_filter_by_prediction_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path / "p.jsonl", 20)
    assert main(["predlog", "tail", "--file", str(tmp_path / "p.jsonl"), "-n", "0", "--prediction-id", "p1"]) == 0
    assert [r["scores"][0] for r in printed(capsys)] == [1.0, 5.0, 9.0, 13.0, 17.0]


def test_default_source_is_the_configured_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_log(tmp_path / "p.jsonl", 2)
    monkeypatch.setenv("SIBYL_PREDLOG__PATH", str(tmp_path / "p.jsonl"))
    assert main(["predlog", "tail"]) == 0
    assert len(printed(capsys)) == 2


def test_bad_line_is_skipped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.jsonl"
    write_log(path, 2)
    with path.open("a") as f:
        f.write("not json\n")
    assert main(["predlog", "tail", "--file", str(path)]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 2
    assert ":3 skipped" in out.err


def test_follow_prints_new_records_until_deadline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.jsonl"
    write_log(path, 1)

    def append_later() -> None:
        time.sleep(0.4)
        with path.open("a") as f:
            f.write('{"prediction_id":"late"}\n')

    writer = threading.Thread(target=append_later)
    writer.start()
    assert main(["predlog", "tail", "--file", str(path), "-f", "--for", "1.5"]) == 0
    writer.join()
    assert [r["prediction_id"] for r in printed(capsys)] == ["p0", "late"]


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predlog", "tail", "--file", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predlog", "tail", "--file", str(tmp_path / "x"), "-n", "-1"]) == 2
    assert "-n must be" in capsys.readouterr().err
    assert main(["predlog", "tail", "--spool", str(tmp_path / "nope")]) == 2
    assert "spool directory" in capsys.readouterr().err


def test_spool_contents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = KafkaSink(
        f"127.0.0.1:{free_port()}", "t", Spool(tmp_path / "spool", 1 << 20), Metrics(), connect_timeout_ms=100
    )
    sink.start()
    for i in range(5):
        sink.submit(PredictionLog(prediction_id=f"s{i}"))
    sink.close(5)
    assert main(["predlog", "tail", "--spool", str(tmp_path / "spool"), "-n", "2"]) == 0
    assert [r["prediction_id"] for r in printed(capsys)] == ["s3", "s4"]
