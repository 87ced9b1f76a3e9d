"""Blocking reader of a Feast online store in Redis for batch jobs (sibyl.batch on Spark and Ray).

The same keys, fields, decoding and view ttls as the server's feast-redis source (feast_redis.FeastLayout), on a
plain blocking redis-py client, in pipelined chunks; a Redis failure raises Unavailable (see bulk.py for why).
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from sibyl.compat.redis_replies import read_replies_blocking
from sibyl.errors import Unavailable
from sibyl.features.base import EntityKey, FeatureValue, Wanted
from sibyl.features.feast_redis import FeastLayout, FeastSettings, Read, pack_hmgets

Found = dict[EntityKey, dict[str, FeatureValue]]


class FeastReader(FeastLayout):
    def __init__(
        self, url: str, settings: FeastSettings, chunk_entities: int = 10_000, timeout_s: float = 30.0
    ) -> None:
        super().__init__(settings, self._count_decode_error)
        self.url, self.chunk = url, max(1, chunk_entities)
        options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        self.client = (
            RedisCluster.from_url(url, **options) if settings.cluster else redis.Redis.from_url(url, **options)
        )
        self.round_trips = 0
        self.decode_errors = 0  # values that did not fit their spec, unmapped inputs, bad ids (read as missing)
        self.first_decode_error = ""
        self.stale = 0  # values older than their view's ttl (read as missing)
        self.on_stale = self._count_stale

    def _count_decode_error(self, key: EntityKey, name: str, reason: str) -> None:
        self.decode_errors += 1
        self.first_decode_error = self.first_decode_error or f"{key[0]}={key[1]} {name}: {reason}"

    def _count_stale(self, view: str, count: int) -> None:
        self.stale += count

    def read(self, wanted: Wanted) -> Found:
        reads = self.plan_reads(wanted)
        out: Found = {}
        try:
            for start in range(0, len(reads), self.chunk):
                part = reads[start : start + self.chunk]
                out.update(self.decode(part, self._hmgets(part), wanted))
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Feast online store {self.url} failed reading {len(reads)} entities: {exc}") from None
        return out

    def _hmgets(self, reads: list[Read]) -> list[Any]:
        self.round_trips += 1
        if isinstance(self.client, RedisCluster):  # redis-py splits the pipeline per node
            pipe = self.client.pipeline(transaction=False)
            for _, key, plan in reads:
                pipe.hmget(cast(str, key), plan.fields)
            return cast(list[Any], pipe.execute(raise_on_error=False))
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([pack_hmgets(reads)], check_health=False)
            replies: list[Any] = read_replies_blocking(conn, len(reads))
        except BaseException:
            conn.disconnect()  # unread replies would poison the next user of this connection
            raise
        finally:
            pool.release(conn)
        return replies

    def close(self) -> None:
        self.client.close()
