"""`sibyl features load` / `get` against a real redis-server: CSV, Parquet, JSONL, TTL, line-numbered errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from sibyl.cli.main import main
from sibyl.features.codec import entity_key, field_name
from tests.support.servers import RedisServer

PREFIX = "load:v1"


def _run(server: RedisServer, *args: str) -> int:
    return main(["features", *args, "--url", server.url, "--prefix", PREFIX])


def _field(client: redis.Redis, entity: str, entity_id: str, name: str) -> bytes | None:
    return client.hget(entity_key(PREFIX, entity, entity_id), field_name(name, "xxh32"))  # type: ignore[return-value]


def test_csv_load_then_get(fresh_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "consumers.csv"
    lines = ["consumer_id,consumer_orders_30d,consumer_emb,recent_stores"]
    lines += [f"{i},{i}.5,0.1;0.2;0.3;{i},{i};{i + 1}" for i in range(2500)]
    path.write_text("\n".join(lines) + "\n")
    assert (
        _run(fresh_redis, "load", str(path), "--chunk-rows", "300", "--ttl", "600", "--int-list", "recent_stores") == 0
    )
    assert "2500 entities" in capsys.readouterr().err

    client = redis.Redis.from_url(fresh_redis.url)
    assert client.dbsize() == 2500
    assert np.frombuffer(_field(client, "consumer_id", "7", "consumer_orders_30d") or b"", "<f4").tolist() == [7.5]
    assert np.frombuffer(_field(client, "consumer_id", "7", "recent_stores") or b"", "<i4").tolist() == [7, 8]
    assert 0 < client.pttl(entity_key(PREFIX, "consumer_id", "7")) <= 600_000

    assert _run(fresh_redis, "get", "consumer_id", "7") == 0
    out = capsys.readouterr().out
    assert "consumer_orders_30d" in out and "7.5" in out  # named through the example store's manifests
    assert "[0.1, 0.2, 0.3, 7.0]" in out and "ttl" in out
    assert _run(fresh_redis, "get", "consumer_id", "7", "--feature", "recent_stores", "--feature", "nope") == 0
    out = capsys.readouterr().out
    assert "recent_stores" in out and "nope" in out and "absent" in out
    client.close()


def test_bad_csv_line_is_named_and_rows_before_it_are_written(
    fresh_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    lines = ["store_id,store_rating"] + [f"s{i},4.{i % 10}" for i in range(1, 251)] + ["s251,four"] + ["s252,4.0"]
    path.write_text("\n".join(lines) + "\n")
    assert _run(fresh_redis, "load", str(path), "--chunk-rows", "100") == 2
    err = capsys.readouterr().err
    assert "line 252" in err and "'four' is not a number" in err
    assert "250 rows before it were written (up to line 251); nothing after" in err
    assert "Traceback" not in err
    client = redis.Redis.from_url(fresh_redis.url)
    assert client.dbsize() == 250
    assert _field(client, "store_id", "s252", "store_rating") is None
    client.close()


def test_int_list_value_error_names_the_line(
    fresh_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ints.csv"
    path.write_text("consumer_id,recent_stores\n1,1;2\n2,3;4.5\n")
    assert _run(fresh_redis, "load", str(path), "--int-list", "recent_stores") == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "not a 32-bit integer" in err and "1 rows before it were written" in err
    assert redis.Redis.from_url(fresh_redis.url).dbsize() == 1


def test_dry_run_checks_without_writing(
    fresh_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "f.csv"
    path.write_text("consumer_id,a\n1,2\n2,x\n")
    assert _run(fresh_redis, "load", str(path), "--dry-run") == 2
    assert "dry run" in capsys.readouterr().err
    assert redis.Redis.from_url(fresh_redis.url).dbsize() == 0


def test_parquet_load(fresh_redis: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "stores.parquet"
    n = 1200
    pq.write_table(
        pa.table(
            {
                "store_id": [f"s{i}" for i in range(n)],
                "store_rating": [i / 100 for i in range(n)],
                "emb": [[i, 1.0] for i in range(n)],
            }
        ),
        path,
    )
    assert _run(fresh_redis, "load", str(path)) == 0
    client = redis.Redis.from_url(fresh_redis.url)
    assert client.dbsize() == n
    assert np.frombuffer(_field(client, "store_id", "s1000", "emb") or b"", "<f4").tolist() == [1000.0, 1.0]
    client.close()


def test_parquet_bad_row_is_named(fresh_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"store_id": ["a", "b", "c"], "r": ["1.0", "2.0", "nope"]}), path)
    assert _run(fresh_redis, "load", str(path)) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "2 rows before it were written" in err


def test_default_load_is_the_example_jsonl(fresh_redis: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(fresh_redis, "load") == 0
    assert _run(fresh_redis, "get", "store_id", "3", "--json") == 0
    assert '"store_rating"' in capsys.readouterr().out


def test_get_unknown_entity_and_dead_redis_are_one_line_errors(
    fresh_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(fresh_redis, "get", "consumer_id", "nobody") == 2
    assert "is not in" in capsys.readouterr().err
    assert main(["features", "get", "consumer_id", "1", "--url", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err
