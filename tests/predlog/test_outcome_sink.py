"""The outcome sink's pieces: where the file goes (beside the log; one per worker), its JSON lines read back as the
Outcome, all-or-nothing hand-off, dead letters rendered as outcomes, and the counters it uses (not the log's)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sibyl.config import load_settings
from sibyl.observability.metrics import Metrics
from sibyl.predlog.outcome_sink import OUTCOME_SPOOL, OUTCOMES, build_outcome_sink, from_json_line, outcome_json_line
from sibyl.predlog.payload import split_payload, spool_payload
from sibyl.predlog.poison import DeadLetters
from sibyl.predlog.settings import PredlogSettings
from sibyl.predlog.spool import SUFFIX, Spool
from sibyl.process.spools import adopt_orphans
from sibyl.process.workers import worker_settings
from sibyl.v1.outcome_pb2 import Outcome


def test_the_outcome_file_sits_beside_the_log_and_each_worker_has_its_own() -> None:
    assert PredlogSettings(path="/var/log/sibyl/predictions.jsonl").outcomes_file() == Path(
        "/var/log/sibyl/outcomes.jsonl"
    )
    assert PredlogSettings(outcomes_path="/data/o.jsonl").outcomes_file() == Path("/data/o.jsonl")
    settings = load_settings(predlog={"path": "/logs/predictions.jsonl"})
    files = {worker_settings(settings, i).predlog.outcomes_file() for i in range(3)}
    assert files == {Path(f"/logs/outcomes.worker-{i}.jsonl") for i in range(3)}


def test_a_line_is_the_proto3_json_of_the_outcome() -> None:
    weighted = Outcome(prediction_id="ab" * 16, row=3, value=0.0, observed_at_unix_nanos=2**62, weight=0.0)
    plain = Outcome(prediction_id="cd" * 16, value=-2.5, observed_at_unix_nanos=1)
    for outcome in (weighted, plain):
        line = outcome_json_line(outcome)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert from_json_line(line) == outcome
    assert json.loads(outcome_json_line(plain)) == {
        "prediction_id": "cd" * 16,
        "row": 0,
        "value": -2.5,
        "observed_at_unix_nanos": "1",
    }  # zeros written (a plain JSON reader needs no proto defaults); weight only when given
    assert json.loads(outcome_json_line(weighted))["weight"] == 0.0


def test_the_file_sink_takes_a_call_whole_or_not_at_all(tmp_path: Path) -> None:
    metrics = Metrics()
    settings = PredlogSettings(path=str(tmp_path / "predictions.jsonl"), queue_size=5)
    sink = build_outcome_sink(settings, metrics)
    assert sink is not None and build_outcome_sink(PredlogSettings(sink="none"), metrics) is None
    now = time.time_ns()
    calls = [
        [Outcome(prediction_id=f"{i:032x}", value=1.0, observed_at_unix_nanos=now) for i in range(n)] for n in (6, 5)
    ]
    assert not sink.submit_all(calls[0])  # over the queue: nothing taken, so the caller can retry it all
    assert sink.submit_all(calls[1])
    sink.start()
    sink.close(5)
    assert not sink.submit_all(calls[1][:1])  # closed: refused, not dropped
    lines = (tmp_path / "outcomes.jsonl").read_bytes().splitlines()
    assert [from_json_line(line) for line in lines] == calls[1]
    registry = metrics.registry
    assert registry.get_sample_value("sibyl_outcomes_total", {"outcome": "written"}) == 5
    assert registry.get_sample_value("sibyl_predlog_records_total", {"outcome": "written"}) is None


def test_a_refused_outcome_is_dead_lettered_as_an_outcome(tmp_path: Path) -> None:
    outcome = Outcome(prediction_id="ef" * 16, row=1, value=1.0, observed_at_unix_nanos=5)
    letters = DeadLetters(tmp_path, OUTCOMES.dead_letter)
    assert letters.write(outcome.SerializeToString(), "too large")
    (entry,) = [json.loads(line) for line in letters.path.read_text().splitlines()]
    assert entry["reason"] == "too large"
    assert from_json_line(json.dumps(entry["record"])) == outcome
    assert OUTCOMES.trim(outcome.SerializeToString()) is None  # nothing to drop from an outcome


def test_outcome_spool_segments_stranded_by_a_workers_change_are_adopted(tmp_path: Path) -> None:
    """--workers 4 -> 2: worker-3's outcome spool is replayed by worker-1's outcome sink (process/spools.py)."""
    stranded = tmp_path / "worker-3" / OUTCOME_SPOOL
    spool = Spool(stranded, 1024**2)
    spool.open()
    spool.append([spool_payload(b"ab" * 16, b"outcome")])
    spool.close()
    assert adopt_orphans(tmp_path, 2) == 1
    adopted = Spool(tmp_path / "worker-1" / OUTCOME_SPOOL, 1024**2)
    adopted.open()
    try:
        assert [split_payload(p) for p in adopted.read(10).payloads] == [(b"ab" * 16, b"outcome")]
    finally:
        adopted.close()
    assert not list(stranded.glob(f"*{SUFFIX}")) and not list((tmp_path / "worker-1").glob(f"*{SUFFIX}"))
