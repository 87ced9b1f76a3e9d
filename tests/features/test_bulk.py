"""The blocking batch reader and snapshot writer (features/bulk.py) against real Redis and Redis Cluster: the same
bytes and TTL as `sibyl features load`, the same values as the server's reader, clear errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from sibyl.cli.main import main
from sibyl.config import EXAMPLE_FEATURES
from sibyl.errors import InvalidArgument, Unavailable
from sibyl.features.bulk import RedisReader, SnapshotWriter, write_partition
from sibyl.features.codec import entity_key
from sibyl.features.redis import RedisFeatureStore, connect
from sibyl.models.manifest import FeatureSpec
from tests.support.feature_snapshots import dump, example_records
from tests.support.redis_servers import RedisCluster, RedisServer

TAGS = FeatureSpec(name="tags", entity="consumer_id", dtype="int_list", dim=3)


def test_writer_writes_what_features_load_writes(fresh_redis: RedisServer) -> None:
    assert main(["features", "load", str(EXAMPLE_FEATURES), "--url", fresh_redis.url, "--prefix", "cli:v1"]) == 0
    assert main(["features", "load", str(EXAMPLE_FEATURES), "--url", fresh_redis.url, "--prefix", "cli:v2", "--ttl", "600"]) == 0  # fmt: skip
    written = 0
    for entity in ("consumer_id", "store_id"):
        records = example_records(entity)
        written += write_partition(records, entity=entity, id_column="id", url=fresh_redis.url, prefix="job:v1")
        written += write_partition(
            iter(records), entity=entity, id_column="id", url=fresh_redis.url, prefix="job:v2", ttl_s=600, chunk_rows=7
        )
    assert written == 2 * 300
    client = redis.Redis.from_url(fresh_redis.url)
    try:
        assert dump(client, "job:v1") == dump(client, "cli:v1") and len(dump(client, "cli:v1")) == 300
        assert dump(client, "job:v2") == dump(client, "cli:v2"), "same bytes, and a TTL on every key"
        assert all(expires for _, expires in dump(client, "job:v2").values())
    finally:
        client.close()


def test_reader_reads_what_the_servers_reader_reads(fresh_redis: RedisServer) -> None:
    with SnapshotWriter(fresh_redis.url, "r:v1", specs={"tags": TAGS}) as writer:
        writer.write([("consumer_id", str(i), {"orders": float(i), "tags": [i, i + 1]}) for i in range(50)])
    orders = FeatureSpec(name="orders", entity="consumer_id")
    wanted = {("consumer_id", str(i)): [orders, TAGS] for i in range(60)}  # 50-59 are not there
    reader = RedisReader(fresh_redis.url, "r:v1", chunk_entities=16)
    try:
        got = reader.read(wanted)
    finally:
        reader.close()

    async def server_read() -> dict[Any, Any]:
        store = RedisFeatureStore(connect(fresh_redis.url), "r:v1")
        try:
            return await store.fetch(wanted)
        finally:
            await store.close()

    expected = asyncio.run(server_read())
    assert len(got) == 50 and got.keys() == expected.keys()
    assert all(got[k]["orders"] == expected[k]["orders"] for k in got)
    assert got[("consumer_id", "7")]["tags"].tolist() == [7.0, 8.0, 0.0], "int_list read back zero-padded to dim"
    assert reader.round_trips == 4, "60 entities in pipelines of 16"


def test_bulk_reply_read_equals_the_per_reply_read(fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocking reader parses a pipeline's replies in bulk with hiredis, like the server's reader; redis-py's
    read_response per reply is the fallback. Both read the same values from 3,000 entities (many socket reads),
    with a key of the wrong type and an unknown entity among them, and the pooled connection stays in step."""
    from sibyl.compat import redis_replies

    with SnapshotWriter(fresh_redis.url, "b:v1", specs={"tags": TAGS}) as writer:
        writer.write([("consumer_id", str(i), {"orders": float(i), "tags": [i, -i]}) for i in range(3_000)])
    client = redis.Redis.from_url(fresh_redis.url)
    client.set(entity_key("b:v1", "consumer_id", "1500"), "a string, not a hash")
    client.close()
    orders = FeatureSpec(name="orders", entity="consumer_id")
    wanted = {("consumer_id", str(i)): [orders, TAGS] for i in [*range(3_000), 123_456]}
    one_by_one = 0
    read_one = redis_replies._read_one_blocking

    def counted(conn: Any) -> Any:
        nonlocal one_by_one
        one_by_one += 1
        return read_one(conn)

    monkeypatch.setattr(redis_replies, "_read_one_blocking", counted)
    reader = RedisReader(fresh_redis.url, "b:v1")
    try:
        bulk = reader.read(wanted)
        assert one_by_one == 0, "the bulk path, not the fallback"
        assert reader.decode_errors == 1 and "consumer_id=1500" in reader.first_decode_error
        monkeypatch.setattr(redis_replies, "READER", None)  # as without hiredis
        per_reply = reader.read(wanted)
        assert one_by_one == len(wanted)
        monkeypatch.undo()
        again = reader.read({("consumer_id", "7"): [orders]})  # the bulk path again, on the same connection
    finally:
        reader.close()
    assert len(bulk) == 2_999 and bulk.keys() == per_reply.keys()
    for key, values in bulk.items():
        assert values["orders"] == per_reply[key]["orders"] == float(key[1])
        assert values["tags"].tolist() == per_reply[key]["tags"].tolist() == [float(key[1]), -float(key[1]), 0.0]
    assert again == {("consumer_id", "7"): {"orders": 7.0}}


def test_cluster_write_and_read(redis_cluster: RedisCluster) -> None:
    with SnapshotWriter(redis_cluster.url, "c:v1", cluster=True) as writer:
        assert writer.write([("store_id", str(i), {"rating": i / 10}) for i in range(40)]) == 40
    rating = FeatureSpec(name="rating", entity="store_id")
    reader = RedisReader(redis_cluster.url, "c:v1", cluster=True)
    try:
        got = reader.read({("store_id", str(i)): [rating] for i in range(40)})
    finally:
        reader.close()
    assert sorted(round(v["rating"], 3) for v in got.values()) == [i / 10 for i in range(40)]


def test_bad_rows_and_a_dead_redis_get_clear_errors(fresh_redis: RedisServer) -> None:
    records = [{"id": "1", "orders": 2.0}, {"id": "2", "orders": "many"}]
    with pytest.raises(InvalidArgument, match=r"row 2: column 'orders': 'many' is not a number"):
        write_partition(records, entity="consumer_id", id_column="id", url=fresh_redis.url, prefix="bad:v1")
    with pytest.raises(InvalidArgument, match=r"row 1: empty entity id in column 'id'"):
        write_partition([{"id": None, "x": 1.0}], entity="c", id_column="id", url=fresh_redis.url, prefix="bad:v1")
    with pytest.raises(InvalidArgument, match=r"consumer_id=3 feature 'tags': int_list value 1.5 is not a 32-bit"):
        SnapshotWriter(fresh_redis.url, "bad:v1", specs={"tags": TAGS}).write([("consumer_id", "3", {"tags": [1.5]})])
    reader = RedisReader("redis://127.0.0.1:1/0", "x", timeout_s=1.0)
    with pytest.raises(Unavailable, match=r"feature store redis://127.0.0.1:1/0 failed reading 1 entities"):
        reader.read({("consumer_id", "1"): [TAGS]})
