"""BatchScorer in one process: the server's scores and defaults bit for bit, pinned versions, no thread, no file,
clear errors for bad tables, and the optional logs."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sibyl.batch import BatchScorer, ParquetLog, SinkLog
from sibyl.errors import InvalidArgument, NotFound
from sibyl.predlog.settings import PredlogSettings
from tests.batch.example_case import STORE_URL, load_example_features, make_case
from tests.batch.server_answers import server_scores
from tests.support.inproc import publish_models
from tests.support.kafkaread import read_topic
from tests.support.redis_servers import RedisServer, redis_command
from tests.support.servers import KafkaBroker, create_topic

ROWS = 12_000


def defaulted_sets(column: Any) -> list[set[str]]:
    return [set(v) for v in column.to_pylist()]


def test_scores_and_defaults_equal_the_servers_bit_for_bit(tmp_path: Path, redis_features: dict[str, Any]) -> None:
    """Same rows, same Redis: the scorer's float32 scores equal the server's exactly (np.array_equal, no tolerance),
    for the primary and an extra model, and every row's defaulted features are the same."""
    case = make_case(ROWS)
    expected, expected_defaulted = server_scores(tmp_path, case, redis_features, ["mlp@1"])
    with BatchScorer.load(STORE_URL, "example", extra_models=["mlp@1"], features=redis_features, chunk_rows=4096) as s:
        out = s.score(case.table())
    assert np.array_equal(out.column("score_gbdt").to_numpy(), expected["gbdt@1"])
    assert np.array_equal(out.column("score_mlp").to_numpy(), expected["mlp@1"])
    assert defaulted_sets(out.column("defaulted")) == expected_defaulted
    assert any("consumer_orders_30d" in d for d in expected_defaulted), "unknown consumers took defaults"
    assert any(d == {"promo_pct"} for d in expected_defaulted), "known entities came from Redis (promo_pct: no column)"
    assert out.schema.field("score_gbdt").metadata == {b"sibyl.model": b"gbdt@1"}
    ids = out.column("prediction_id").to_pylist()
    assert len(set(ids)) == ROWS and all(len(i) == 32 for i in ids)


def test_one_pipelined_read_per_chunk_of_distinct_entities(fresh_redis: RedisServer) -> None:
    features = load_example_features(fresh_redis)
    case = make_case(3000)
    redis_command(fresh_redis.port, b"CONFIG RESETSTAT")
    scorer = BatchScorer.load(STORE_URL, "gbdt@1", features=features, fetch_entities=100)
    scorer.score(case.table())
    # Every row lacks consumer_orders_30d; only rows without store_rating (every 5th) need their store.
    consumers = set(case.entities["consumer_id"])
    stores = {s for i, s in enumerate(case.entities["store_id"]) if i % 5 == 0} - {""}
    stats = redis_command(fresh_redis.port, b"INFO commandstats").decode()
    hmget = next(line for line in stats.splitlines() if line.startswith("cmdstat_hmget:"))
    assert f"calls={len(consumers) + len(stores)}," in hmget, "one HMGET per distinct entity, not per row"
    assert scorer.reader.round_trips == -(-(len(consumers) + len(stores)) // 100), "one pipeline per 100 entities"


def test_pandas_and_record_batches_give_the_same_scores(tmp_path: Path) -> None:
    case = make_case(2000)
    table = case.table()
    scorer = BatchScorer.load(STORE_URL, "gbdt@1", features={"backend": "memory"})
    from_table = scorer.score(table)
    frame = scorer.score(table.to_pandas())
    batch = scorer.score(table.to_batches()[0])
    assert isinstance(batch, pa.RecordBatch) and batch.num_rows == 2000
    assert np.array_equal(frame["score_gbdt"].to_numpy(), from_table.column("score_gbdt").to_numpy())
    assert np.array_equal(batch.column("score_gbdt").to_numpy(), from_table.column("score_gbdt").to_numpy())
    assert frame.attrs["sibyl.models"] == {"score_gbdt": "gbdt@1"}
    assert list(frame.columns[: len(table.column_names)]) == table.column_names, "input columns untouched, in order"


def test_a_vector_as_a_list_column_or_as_columns_is_the_same() -> None:
    case = make_case(500)
    table = case.table()
    emb = np.asarray(case.columns["consumer_emb"], np.float64)
    split = table.drop_columns(["consumer_emb"])
    for i in range(4):
        split = split.append_column(f"consumer_emb[{i}]", pa.array(emb[:, i], from_pandas=True))
    scorer = BatchScorer.load(STORE_URL, "gbdt@1", features={"backend": "memory"})
    assert np.array_equal(
        scorer.score(table).column("score_gbdt").to_numpy(), scorer.score(split).column("score_gbdt").to_numpy()
    )


def test_versions_are_pinned_at_load(tmp_path: Path) -> None:
    catalog = publish_models(tmp_path / "store")
    scorer = BatchScorer.load(f"file://{tmp_path / 'store'}", "p")
    table = pa.table({"amount": [1.0, 2.0], "age": [30.0, 40.0]})
    before = scorer.score(table).column("score_m").to_numpy()
    from tests.support.onnxgen import publish_logistic

    publish_logistic(catalog, "m", "2", [5.0, 0, 0, 0, 0])
    catalog.promote("p", "m@2")
    assert scorer.refs == ["m@1"]
    assert np.array_equal(scorer.score(table).column("score_m").to_numpy(), before)
    assert BatchScorer.load(f"file://{tmp_path / 'store'}", "p").refs == ["m@2"], "a new load takes the new primary"


def test_no_thread_no_file_no_log_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    threads = threading.active_count()
    scorer = BatchScorer.load(STORE_URL, "example", features={"backend": "memory"})
    scorer.score(make_case(3000).table())
    scorer.close()
    assert threading.active_count() == threads
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"store_rating": ["high"]}), "column 'store_rating' is string; a feature column holds numbers"),
        (pa.table({"consumer_emb": [[1.0, 2.0]]}), "column 'consumer_emb' row 0: 2 values, the feature has dim 4"),
        (pa.table({"consumer_emb": [1.0]}), "the vector feature consumer_emb needs a list of 4 numbers"),
        (pa.table({"consumer_id": [1.5]}), "entity column 'consumer_id' is double; ids are strings or integers"),
        (pa.table({"distance_km": [1.0, float("inf")]}), "feature 'distance_km' in row 1 is infinite"),
        (pa.table({"prediction_id": ["x"]}), "the input already has column(s) ['prediction_id']"),
    ],
)
def test_bad_tables_get_a_clear_error(table: pa.Table, message: str) -> None:
    scorer = BatchScorer.load(STORE_URL, "gbdt@1")
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        scorer.score(table)


def test_unknown_target_says_what_to_give() -> None:
    with pytest.raises(NotFound, match=r"predictor 'nope' not found.*give a predictor name or model@version"):
        BatchScorer.load(STORE_URL, "nope")
    with pytest.raises(NotFound, match="model gbdt@9 not found"):
        BatchScorer.load(STORE_URL, "gbdt@9")


def test_context_ids_serve_every_row_and_missing_ids_default() -> None:
    table = pa.table({"distance_km": [1.0, 2.0, 3.0]})
    plain = BatchScorer.load(STORE_URL, "gbdt@1", features={"backend": "memory"}).score(table)
    shared = BatchScorer.load(STORE_URL, "gbdt@1", features={"backend": "memory"}, context={"consumer_id": "1"})
    with_context = shared.score(table)
    assert "consumer_orders_30d" in plain.column("defaulted")[0].as_py()
    assert "consumer_orders_30d" not in with_context.column("defaulted")[0].as_py()
    assert not np.array_equal(plain.column("score_gbdt").to_numpy(), with_context.column("score_gbdt").to_numpy())


def test_parquet_log_holds_each_models_input_and_score(tmp_path: Path) -> None:
    table = make_case(1000).table()
    scorer = BatchScorer.load(STORE_URL, "example", extra_models=["mlp@1"], log=ParquetLog(str(tmp_path / "log")))
    out = scorer.score(table)
    scorer.close()
    logged = pq.read_table(tmp_path / "log" / "gbdt@1")
    assert logged.column("prediction_id").to_pylist() == out.column("prediction_id").to_pylist()
    assert np.array_equal(logged.column("score").to_numpy(), out.column("score_gbdt").to_numpy())
    assert logged.column("consumer_orders_30d").to_pylist()[:3] == [2.0] * 3, "the default the model was given"
    assert pq.read_table(tmp_path / "log" / "mlp@1").num_rows == 1000


def test_sink_log_sends_the_servers_records_to_kafka(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    kafka_broker.start()
    topic = f"batch-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker.bootstrap, topic)
    settings = PredlogSettings(
        sink="kafka", kafka_bootstrap=kafka_broker.bootstrap, topic=topic, spool_dir=str(tmp_path / "spool")
    )
    scorer = BatchScorer.load(STORE_URL, "example", log=SinkLog(settings, rows_per_record=400))
    out = scorer.score(make_case(1000).table())
    scorer.close()
    records = read_topic(kafka_broker.bootstrap, topic, at_least=3)
    assert [r.num_rows for r in records] == [400, 400, 200]
    ids = out.column("prediction_id").to_pylist()
    assert [r.prediction_id for r in records] == [ids[0], ids[400], ids[800]]
    scores = np.concatenate([np.asarray(r.scores, np.float32) for r in records])
    assert np.array_equal(scores, out.column("score_gbdt").to_numpy())
    assert records[0].model == "gbdt" and records[0].feature_names[0] == "consumer_orders_30d"
    assert list(records[0].row_entities[0].ids[:2]) == [str(x) for x in out.column("consumer_id").to_pylist()[:2]]


def test_an_empty_table_gets_empty_columns() -> None:
    """Spark and Ray hand over empty batches: the output has every column, typed, and no rows."""
    scorer = BatchScorer.load(STORE_URL, "example", extra_models=["mlp@1"])
    empty = pa.table({"distance_km": pa.array([], pa.float64())})
    out = scorer.score(empty)
    assert out.num_rows == 0 and out.schema.names == [
        "distance_km",
        "score_gbdt",
        "score_mlp",
        "prediction_id",
        "defaulted",
    ]
    assert out.schema.field("defaulted").type == pa.list_(pa.string())
    assert scorer.score(pa.RecordBatch.from_pylist([], schema=empty.schema)).num_rows == 0
