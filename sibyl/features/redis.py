"""Redis (standalone or Cluster) feature store: one hash per entity, one pipelined HMGET per entity.

A fetch is one non-transactional pipeline: one round trip to a standalone Redis; against a cluster, one
round trip per node that holds a wanted entity, sent to all nodes at once. Layout and encoding: codec.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from sibyl.compat.redis_replies import read_replies
from sibyl.features.base import EntityKey, FeatureValue, Wanted
from sibyl.features.codec import (
    F32,
    DecodeError,
    Dtype,
    EncodeError,
    FieldHash,
    decode,
    encode,
    entity_key,
    field_name,
)
from sibyl.models.manifest import FeatureSpec

OnDecodeError = Callable[[EntityKey, str, str], None]  # (entity key, feature, reason)
Row = tuple[str, str, Mapping[str, Any]]  # (entity, id, {feature name: value})


def _ignore(key: EntityKey, name: str, reason: str) -> None:
    return None


def connect(url: str, cluster: bool = False, timeout_s: float = 1.0) -> Redis | RedisCluster:
    """A client that fails fast (no retries): budgets and the breaker decide what to do about failures."""
    if cluster:
        return RedisCluster.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
    return Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))


@lru_cache(maxsize=4096)
def _fields(names: tuple[str, ...], scheme: FieldHash) -> tuple[bytes, list[bytes]]:
    """The RESP-encoded field arguments of an HMGET for these names, and the fields themselves."""
    fields = [field_name(n, scheme) for n in names]
    return b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields), fields


class RedisFeatureStore:
    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str,
        field_hash: FieldHash = "xxh32",
        on_decode_error: OnDecodeError = _ignore,
    ) -> None:
        self.client, self.prefix, self.field_hash = client, prefix, field_hash
        self.name = "redis-cluster" if isinstance(client, RedisCluster) else "redis"
        self.on_decode_error = on_decode_error
        self.round_trips = 0  # pipeline executions (per node for a cluster): tests count these

    async def fetch(self, wanted: Wanted) -> dict[EntityKey, dict[str, FeatureValue]]:
        if not wanted:
            return {}
        keys = list(wanted)
        prefix = self.prefix
        if isinstance(self.client, RedisCluster):  # redis-py splits the pipeline per node, sends them together
            pipe = self.client.pipeline(transaction=False)
            for entity, entity_id in keys:
                names = tuple(s.name for s in wanted[(entity, entity_id)])
                pipe.hmget(entity_key(prefix, entity, entity_id), _fields(names, self.field_hash)[1])
            # raise_on_error=False: a key of the wrong Redis type spoils its own reply, not the whole request.
            replies = await pipe.execute(raise_on_error=False)
        else:
            replies = await self._pipeline_hmget(self.client, keys, wanted)
        self.round_trips += self._nodes(keys)
        return decode_replies(keys, wanted, replies, self.on_decode_error)

    async def _pipeline_hmget(self, client: Redis, keys: list[EntityKey], wanted: Wanted) -> list[Any]:
        """One write of all HMGETs (pack_hmgets) and one read of all replies on one pooled connection."""
        pool = client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(pack_hmgets(keys, wanted, self.prefix, self.field_hash), check_health=False)
            replies = await read_replies(conn, len(keys))  # in bulk: sibyl.compat.redis_replies
        except BaseException:  # cancelled or failed mid-read: unread replies would poison the next user
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return replies

    def _nodes(self, keys: list[EntityKey]) -> int:
        if not isinstance(self.client, RedisCluster):
            return 1
        nodes = (self.client.get_node_from_key(entity_key(self.prefix, e, i)) for e, i in keys)
        return len({node.name for node in nodes if node is not None})  # None: no node has the slot (yet)

    def encode_rows(
        self, rows: Iterable[Row], specs: Mapping[str, FeatureSpec | Dtype] | None = None
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        return encode_rows(rows, self.prefix, self.field_hash, specs)

    async def write_entities(
        self,
        rows: Iterable[Row],
        specs: Mapping[str, FeatureSpec | Dtype] | None = None,
        ttl_s: float | None = None,
    ) -> int:
        """HSET each entity's features (plus PEXPIRE with a TTL) in one pipeline; returns entities written.

        Everything is encoded before anything is sent: an EncodeError leaves Redis untouched.
        """
        pipe = self.client.pipeline(transaction=False)
        count = queue_writes(pipe, self.encode_rows(rows, specs), ttl_s)
        if count:
            await pipe.execute()
        return count

    async def read_raw(self, entity: str, entity_id: str) -> dict[bytes, bytes]:
        """Every field of one entity's hash (for `sibyl features get`)."""
        fields = await self.client.hgetall(entity_key(self.prefix, entity, entity_id))
        return cast(dict[bytes, bytes], fields)  # bytes: connect() leaves decode_responses off

    async def ttl_s(self, entity: str, entity_id: str) -> float | None:
        ms = await self.client.pttl(entity_key(self.prefix, entity, entity_id))
        return ms / 1000 if ms >= 0 else None

    async def close(self) -> None:
        await self.client.aclose()


# ---- the wire format of a read and a write, shared with the blocking batch reader and writer (features.bulk)
def pack_hmgets(keys: list[EntityKey], wanted: Wanted, prefix: str, scheme: FieldHash) -> bytes:
    """Every entity's HMGET as one RESP byte string: the field part is the same for every entity with the same
    spec list, so it is built once (_fields); one join, one write."""
    parts = []
    last: object = None  # assembly.plan gives all ids of an entity one spec list: its head is built once
    for entity, entity_id in keys:
        specs = wanted[(entity, entity_id)]
        if specs is not last:
            last, names = specs, tuple(s.name for s in specs)
            count, head = len(names) + 2, _fields(names, scheme)[0]
        key = entity_key(prefix, entity, entity_id).encode()
        parts.append(b"*%d\r\n$5\r\nHMGET\r\n$%d\r\n%s\r\n%s" % (count, len(key), key, head))
    return b"".join(parts)


def field_lists(names: tuple[str, ...], scheme: FieldHash) -> list[bytes]:
    """The hashed fields of an HMGET for these names (for clients that pack commands themselves)."""
    return _fields(names, scheme)[1]


def decode_replies(
    keys: list[EntityKey], wanted: Wanted, replies: list[Any], on_decode_error: OnDecodeError
) -> dict[EntityKey, dict[str, FeatureValue]]:
    """HMGET replies (raw bytes, in key order) to values per spec; an unreadable value or key is missing."""
    out: dict[EntityKey, dict[str, FeatureValue]] = {}
    unpack = F32.unpack
    last: object = None  # one spec list for all ids of an entity, as in pack_hmgets
    named: list[tuple[str, bool, FeatureSpec]] = []
    for key, raws in zip(keys, replies, strict=True):
        if isinstance(raws, Exception):
            if isinstance(raws, ResponseError):  # e.g. WRONGTYPE: treated as unreadable, like a bad value
                on_decode_error(key, "*", str(raws))
                continue
            raise raws
        specs = wanted[key]
        if specs is not last:
            last, named = specs, [(s.name, s.dtype == "float", s) for s in specs]
        values: dict[str, FeatureValue] = {}
        for (name, scalar, spec), raw in zip(named, raws, strict=True):
            if raw is None:
                continue
            if scalar and len(raw) == 4:  # the common case, without a call
                values[name] = unpack(raw)[0]
                continue
            try:
                values[name] = decode(spec, raw)
            except DecodeError as exc:
                on_decode_error(key, name, str(exc))
        if values:
            out[key] = values
    return out


def encode_rows(
    rows: Iterable[Row], prefix: str, scheme: FieldHash, specs: Mapping[str, FeatureSpec | Dtype] | None = None
) -> list[tuple[str, dict[bytes, bytes]]]:
    """(key, {field: bytes}) per row; encoding follows `specs` by feature name, else the value's shape.

    Raises EncodeError naming the entity, the feature and the row's index.
    """
    out = []
    for index, (entity, entity_id, features) in enumerate(rows):
        mapping = {}
        for name, value in features.items():
            spec = specs.get(name) if specs else None
            dtype = spec.dtype if isinstance(spec, FeatureSpec) else spec
            dim = spec.dim if isinstance(spec, FeatureSpec) and spec.dtype == "float_vector" else None
            try:
                mapping[field_name(name, scheme)] = encode(value, dtype, dim)
            except EncodeError as exc:
                raise EncodeError(f"{entity}={entity_id} feature {name!r}: {exc}", index) from None
        out.append((entity_key(prefix, entity, str(entity_id)), mapping))
    return out


def queue_writes(pipe: Any, encoded: list[tuple[str, dict[bytes, bytes]]], ttl_s: float | None) -> int:
    """HSET (plus PEXPIRE with a TTL) per non-empty entity onto a pipeline, sync or async; returns how many."""
    count = 0
    for key, mapping in encoded:
        if not mapping:
            continue
        pipe.hset(key, mapping=mapping)
        if ttl_s:
            pipe.pexpire(key, int(ttl_s * 1000))
        count += 1
    return count
