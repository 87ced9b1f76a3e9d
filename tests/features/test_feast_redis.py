"""The feast-redis store's own connections (FeastRedisStore._pipeline) against a real Redis: concurrent fetches
each get a connection of their own, and a fetch after the server restarted connects again instead of failing."""

from __future__ import annotations

import asyncio
import struct

import redis

from sibyl.features.feast_codec import entity_key, field
from sibyl.features.feast_redis import FeastRedisStore, FeastSettings
from sibyl.features.redis import connect
from sibyl.models.manifest import FeatureSpec
from tests.support.servers import RedisServer

SPECS = [FeatureSpec(name="v__x", entity="d"), FeatureSpec(name="v__y", entity="d")]


def seed(server: RedisServer, ids: range) -> None:
    client = redis.Redis.from_url(server.url)
    try:
        for i in ids:
            key = entity_key("d", "int64", str(i), "p")
            client.hset(key, mapping={field("v", "x"): b"\x35" + struct.pack("<f", i), field("v", "y"): b"\x20\x07"})
    finally:
        client.close()


async def test_concurrent_fetches_and_a_restarted_server(fresh_redis: RedisServer) -> None:
    seed(fresh_redis, range(20))
    store = FeastRedisStore(connect(fresh_redis.url), FeastSettings(project="p"))
    try:
        wanted = [{("d", str(i)): SPECS for i in range(n, 20)} for n in range(6)]
        results = await asyncio.gather(*(store.fetch(w) for w in wanted))
        for w, found in zip(wanted, results, strict=True):
            assert found == {key: {"v__x": float(key[1]), "v__y": 7.0} for key in w}
        assert 1 < len(store._idle) <= len(wanted)  # one connection per fetch in flight, kept for the next ones
        fresh_redis.stop()
        fresh_redis.start()
        seed(fresh_redis, range(3))
        await asyncio.sleep(0.1)  # the loop runs meanwhile, as it does between requests: it sees the closed sockets
        assert await store.fetch({("d", "2"): SPECS}) == {("d", "2"): {"v__x": 2.0, "v__y": 7.0}}
    finally:
        await store.close()
    assert store._idle == []
