"""The monitor's file sources: every worker's files, only whole lines, a replaced file read from its start, and
positions stored with the state (sibyl.monitor.sources, evaluator)."""

from __future__ import annotations

from pathlib import Path

import orjson

from sibyl.monitor.evaluator import Evaluator, Slicers, file_sources
from sibyl.predlog.jsonl import to_json_bytes
from sibyl.v1.predict_pb2 import Role
from sibyl.v1.predlog_pb2 import PredictionLog


def record(pid: str) -> bytes:
    log = PredictionLog(prediction_id=pid, predictor="p", model="m", version="1", role=Role.ROLE_PRIMARY,
                        sent_at_unix_nanos=1, num_rows=1, score_dim=1, scores=[0.7])  # fmt: skip
    return to_json_bytes(log, newline=True)


def outcome(pid: str) -> bytes:
    return orjson.dumps({"prediction_id": pid, "row": 0, "value": 1.0}) + b"\n"


def evaluator(folder: Path) -> Evaluator:
    sources = file_sources(folder / "predictions.jsonl", folder / "outcomes.jsonl")
    return Evaluator(folder / "state", 1e12, 1 << 30, Slicers(None, 60.0), sources)


def drain(e: Evaluator) -> None:
    while e.step():
        pass


def test_every_workers_files_are_read_and_only_whole_lines(tmp_path: Path) -> None:
    ids = [f"{i:032x}" for i in range(6)]
    (tmp_path / "predictions.jsonl").write_bytes(record(ids[0]) + record(ids[1]))
    (tmp_path / "predictions.worker-0.jsonl").write_bytes(record(ids[2]) + record(ids[3]))
    (tmp_path / "predictions.worker-1.jsonl").write_bytes(record(ids[4]) + record(ids[5])[:-20])  # still being written
    (tmp_path / "outcomes.worker-1.jsonl").write_bytes(b"".join(outcome(i) for i in ids))
    e = evaluator(tmp_path)
    drain(e)
    assert e.states[0].counters["joined"] == 5 and e.states[0].counters["early"] == 1
    with (tmp_path / "predictions.worker-1.jsonl").open("ab") as f:
        f.write(record(ids[5])[-20:])  # the line completes
    drain(e)
    assert e.states[0].counters["joined"] == 6 and e.states[0].counters["early"] == 0
    e.close()
    again = evaluator(tmp_path)  # a restart resumes at the stored positions: nothing read twice
    drain(again)
    assert again.states[0].counters["joined"] == 6 and again.states[0].counters["duplicate"] == 0
    again.close()


def test_a_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    log.write_bytes(record(f"{1:032x}") * 3)
    e = evaluator(tmp_path)
    drain(e)
    log.unlink()
    log.write_bytes(record(f"{2:032x}"))  # rotated: a new file, shorter than the position read so far
    (tmp_path / "outcomes.jsonl").write_bytes(outcome(f"{2:032x}"))
    drain(e)
    assert e.states[0].counters["joined"] == 1
    e.close()
