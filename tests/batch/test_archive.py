"""`sibyl predlog archive`: the prediction log and the outcomes as Parquet in the documented layout, from the file log
(with its rotated backups) and from Kafka (a real broker); each run adds only what is new, and a run cut short
writes the same files again. The batch slice plan (sibyl.batch.slicing): its rules, and the labels it shares
with the server's slices."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from sibyl.batch.slicing import ArchivedRows, choose
from sibyl.cli.main import main
from sibyl.models.predictor import Slice
from sibyl.serving.decode import RowBatch
from sibyl.serving.slices import Slicer
from sibyl.v1.outcome_pb2 import Outcome
from sibyl.v1.predict_pb2 import Role
from tests.batch.log_records import DAY_NS, T0, record, write_log
from tests.support.kafka_broker import KafkaBroker, create_topic


def read(root: Path, stream: str = "predictions") -> pa.Table:
    return ds.dataset(root / stream, format="parquet", partitioning="hive").to_table()


def archive(root: Path, *args: str) -> int:
    return main(["predlog", "archive", str(root), *args])


def test_the_file_log_archived_in_its_layout_once(tmp_path: Path) -> None:
    log, root = tmp_path / "predictions.jsonl", tmp_path / "archive"
    write_log(log, [record(1), record(1, "mlp", Role.ROLE_SHADOW, dim=2), record(2, at=T0 + DAY_NS),
                    record(3, predictor="eta2")])  # fmt: skip
    assert archive(root, "--file", str(log)) == 0
    folders = sorted(str(p.parent.relative_to(root)) for p in root.rglob("part-*.parquet"))
    assert folders == ["predictions/predictor=eta/date=2026-11-30", "predictions/predictor=eta/date=2026-12-01",
                       "predictions/predictor=eta2/date=2026-11-30"]  # fmt: skip
    table = read(root).sort_by([("prediction_id", "ascending"), ("model", "ascending"), ("row", "ascending")])
    assert table.num_rows == 12
    assert table.column_names[:12] == ["prediction_id", "row", "model", "version", "role", "arm", "request_id",
                                       "sent_at", "score", "scores", "defaulted", "trimmed"]  # fmt: skip
    first = table.slice(0, 3).to_pylist()
    assert [r["row"] for r in first] == [0, 1, 2] and {r["role"] for r in first} == {"primary"}
    assert [r["feature_x1"] for r in first] == [1.0, 3.0, 5.0] and [r["feature_x2"] for r in first] == [2.0, 4.0, 6.0]
    assert [r["defaulted"] for r in first] == [["x2"], [], []]
    assert [r["entity_store_id"] for r in first] == ["s0", "s1", "s2"] and first[0]["entity_consumer_id"] == "c1"
    assert first[0]["scores"] is None and first[0]["score"] == pytest.approx(0.1)
    assert first[0]["sent_at"].timestamp() == T0 / 1e9
    shadow = table.slice(3, 3).to_pylist()
    assert shadow[0]["role"] == "shadow" and shadow[0]["scores"] == pytest.approx([0.1, 0.26], abs=1e-6)
    assert shadow[0]["score"] == pytest.approx(0.1)

    # Again: nothing new. Then new lines: only those.
    assert archive(root, "--file", str(log)) == 0
    assert read(root).num_rows == 12
    write_log(log, [record(4)])
    assert archive(root, "--file", str(log)) == 0
    assert read(root).num_rows == 15

    # The sink rotates (PATH -> PATH.1) after more lines: the rest of PATH.1, then the new PATH.
    write_log(log, [record(5)])
    os.replace(log, log.with_name(log.name + ".1"))
    write_log(log, [record(6)])
    assert archive(root, "--file", str(log)) == 0
    ids = read(root).column("prediction_id").to_pylist()
    assert len(ids) == 21 and sorted(set(ids)) == [f"{i:032x}" for i in range(1, 7)]


def test_a_run_cut_short_writes_the_same_files_again(tmp_path: Path) -> None:
    """Files written, position not recorded (a crash in between): the next run replaces those files."""
    log, root = tmp_path / "predictions.jsonl", tmp_path / "archive"
    write_log(log, [record(i, at=T0 + (i % 2) * DAY_NS) for i in range(10)])
    assert archive(root, "--file", str(log), "--chunk", "4") == 0
    files = sorted(p.name for p in root.rglob("part-*.parquet"))
    assert len(files) == 6  # 3 chunks x 2 dates
    (root / "predictions" / "_archived.json").unlink()
    write_log(log, [record(10)])
    assert archive(root, "--file", str(log), "--chunk", "4") == 0
    assert sorted(p.name for p in root.rglob("part-*.parquet")) == files  # the last chunk took record 10 in
    assert read(root).num_rows == 33


def test_each_workers_file_is_archived_too(tmp_path: Path) -> None:
    """`sibyl serve --workers 2` logs to predictions.jsonl and predictions.worker-<i>.jsonl: all are archived."""
    log, root = tmp_path / "predictions.jsonl", tmp_path / "archive"
    write_log(log, [record(1)])
    write_log(tmp_path / "predictions.worker-1.jsonl", [record(2)])
    write_log(tmp_path / "predictions.worker-1.jsonl.1", [record(3)])  # that worker's rotated backup
    assert archive(root, "--file", str(log)) == 0
    assert sorted(set(read(root).column("prediction_id").to_pylist())) == [f"{i:032x}" for i in (1, 2, 3)]
    write_log(tmp_path / "predictions.worker-1.jsonl", [record(4)])
    assert archive(root, "--file", str(log)) == 0
    assert read(root).num_rows == 12


def test_outcomes_archived_by_date(tmp_path: Path) -> None:
    path, root = tmp_path / "outcomes.jsonl", tmp_path / "archive"
    lines = [
        {"prediction_id": "a" * 32, "row": 0, "value": 1.0, "observed_at_unix_nanos": str(T0)},
        {"prediction_id": "b" * 32, "row": 2, "value": 0.0, "observed_at_unix_nanos": str(T0 + DAY_NS), "weight": 2.5},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    assert archive(root, "--outcomes", "--file", str(path)) == 0
    assert sorted(p.parent.name for p in root.rglob("part-*.parquet")) == ["date=2026-11-30", "date=2026-12-01"]
    rows = read(root, "outcomes").sort_by("prediction_id").to_pylist()
    assert [(r["prediction_id"][0], r["row"], r["value"], r["weight"]) for r in rows] == [("a", 0, 1.0, 1.0),
                                                                                     ("b", 2, 0.0, 2.5)]  # fmt: skip
    assert rows[1]["observed_at"].timestamp() == (T0 + DAY_NS) / 1e9


def test_kafka_topics_archived_as_the_file_log_is(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    """The same records on a 2-partition topic and in a file: the same archived rows; a second run reads only
    what was produced since. Outcomes from their topic too."""
    from kafka import KafkaProducer

    kafka_broker.start()
    bootstrap = kafka_broker.bootstrap
    create_topic(bootstrap, "arch.predictions", partitions=2)
    create_topic(bootstrap, "arch.outcomes", partitions=2)
    records = [record(i, at=T0 + (i % 3) * DAY_NS) for i in range(12)]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for r in records[:8]:
            producer.send("arch.predictions", key=r.prediction_id.encode(), value=r.SerializeToString())
        outcome = Outcome(prediction_id=records[0].prediction_id, row=1, value=1.0, observed_at_unix_nanos=T0)
        producer.send("arch.outcomes", key=outcome.prediction_id.encode(), value=outcome.SerializeToString())
        producer.flush()
        from_kafka = tmp_path / "kafka"
        assert archive(from_kafka, "--kafka", bootstrap, "--topic", "arch.predictions") == 0
        assert archive(from_kafka, "--outcomes", "--kafka", bootstrap, "--topic", "arch.outcomes") == 0
        assert read(from_kafka).num_rows == 24
        for r in records[8:]:
            producer.send("arch.predictions", key=r.prediction_id.encode(), value=r.SerializeToString())
        producer.flush()
    finally:
        producer.close()
    assert archive(from_kafka, "--kafka", bootstrap, "--topic", "arch.predictions") == 0
    write_log(tmp_path / "p.jsonl", records)
    from_file = tmp_path / "file"
    assert archive(from_file, "--file", str(tmp_path / "p.jsonl")) == 0
    order = [("prediction_id", "ascending"), ("row", "ascending")]
    assert read(from_kafka).sort_by(order).to_pylist() == read(from_file).sort_by(order).to_pylist()
    assert read(from_kafka, "outcomes").to_pylist()[0]["row"] == 1


def test_slice_plan_rules() -> None:
    """Values without edges: the `top` most frequent; entities: heavy hitters over the whole period, at most `top`;
    edges and defaulted: serving.slices' own labels."""
    valued = Slice(name="code", feature="code", top=2)
    shop = Slice(name="shop", entity="store_id", top=2)
    counts = {"code": [(3.0, 10), (1.0, 30), (2.0, 10), (None, 99)],
              "shop": [("a", 4), ("b", 50), ("c", 30), ("d", 16), (None, 100)]}  # fmt: skip
    plan = choose([valued, shop], counts)
    assert plan.values == {"code": (1.0, 2.0)}  # ties: the smaller value
    assert plan.entities == {"shop": ("b", "c")}  # >= 100 / (2 * 2) rows, the 2 heaviest

    binned = Slice(name="d", feature="x1", edges=(1.0, 3.0))
    used = Slice(name="used", defaulted="x2")
    x1 = np.array([0.5, 1.0, 2.0, np.nan, 7.0], np.float32)
    rows = ArchivedRows(5, {"x1": x1, "code": np.array([1, 2, 3, np.nan, 1], np.float32)},
                        {"store_id": ["b", "a", None, "c", "b"]}, [["x2"], None, [], ["x2"], []])  # fmt: skip
    labels = choose([binned, used, valued, shop], counts).labels(rows)
    server = Slicer()
    server.configure([binned, used])
    batch = RowBatch(5, ["x1"], x1.reshape(5, 1), {})
    served = server.assign(_Rows(batch, {"x2": np.array([0, 3])}))
    names = server.vocabulary.names
    assert [row[:3] for row in labels] == [[names[i] for i in column] for column in served.T.tolist()]
    assert [row[3:] for row in labels] == [["code=1", "shop=b"], ["code=2", "shop=other"],
                                           ["code=other", "shop=none"], ["code=missing", "shop=c"],
                                           ["code=1", "shop=b"]]  # fmt: skip


class _Rows:
    def __init__(self, batch: RowBatch, defaulted: dict[str, np.ndarray]) -> None:
        self.batch, self.defaulted, self.num_rows = batch, defaulted, batch.num_rows

    def column(self, feature: str) -> np.ndarray | None:
        i = self.batch.index.get(feature)
        return None if i is None else self.batch.values[:, i]

    def entity_ids(self, entity: str) -> object:
        return self.batch.entity_ids(entity)


def test_without_pyarrow_the_archive_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "predictions.jsonl"
    write_log(log, [record(1)])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an install without the parquet extra sees
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert archive(tmp_path / "archive", "--file", str(log)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'sibyl[parquet]'" in err
    assert not (tmp_path / "archive").exists()


def test_a_missing_log_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert archive(tmp_path / "archive", "--file", str(tmp_path / "nope.jsonl")) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err
