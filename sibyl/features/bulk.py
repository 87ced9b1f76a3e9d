"""Blocking, loop-free feature access for batch jobs (sibyl.batch, Spark and Ray tasks).

The same Redis layout, wire format and decoding as the server's reader (redis.pack_hmgets, redis.decode_replies)
and the same encoding and TTL as `sibyl features load` (redis.encode_rows, redis.queue_writes), on a plain
blocking redis-py client: no event loop, no thread, no cache, no budget.

- `open_reader(settings)`: `read(wanted)` in pipelined chunks of `chunk_entities` entities (one round trip per
  chunk on a standalone Redis, one per node per chunk on a cluster). A Redis failure raises Unavailable: a batch
  task fails and its engine retries it, rather than scoring a million rows on defaults as a server would.
- `SnapshotWriter` / `write_partition`: HSET (+ PEXPIRE with a TTL) in pipelined chunks, from any iterable of
  rows, e.g. a Spark `foreachPartition` iterator or a Ray batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, Required, TypedDict, Unpack

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from sibyl.compat.redis_replies import read_replies_blocking
from sibyl.errors import InvalidArgument, Unavailable
from sibyl.features.base import EntityKey, FeatureValue, Wanted
from sibyl.features.codec import Dtype, EncodeError, FieldHash, check_collisions, entity_key
from sibyl.features.feast_bulk import FeastReader
from sibyl.features.memory import MemoryFeatureStore
from sibyl.features.redis import (
    Row,
    decode_replies,
    encode_rows,
    field_lists,
    pack_hmgets,
    queue_writes,
)
from sibyl.features.settings import FeatureSettings
from sibyl.features.sources import BadInput, _parquet_value, _values
from sibyl.features.specs import specs_from_store
from sibyl.models.manifest import FeatureSpec
from sibyl.models.settings import ModelStoreSettings

Found = dict[EntityKey, dict[str, FeatureValue]]


class FeatureReader(Protocol):
    def read(self, wanted: Wanted) -> Found: ...

    def close(self) -> None: ...


class NullReader:
    """backend "none": nothing is found, every missing feature takes its default."""

    def read(self, wanted: Wanted) -> Found:
        return {}

    def close(self) -> None:
        return None


class MemoryReader:
    def __init__(self, store: MemoryFeatureStore) -> None:
        self.store = store

    def read(self, wanted: Wanted) -> Found:
        return self.store.read(wanted)

    def close(self) -> None:
        return None


def _client(url: str, cluster: bool, timeout_s: float) -> redis.Redis | RedisCluster:
    if cluster:
        return RedisCluster.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


class RedisReader:
    def __init__(
        self,
        url: str,
        prefix: str,
        field_hash: FieldHash = "xxh32",
        cluster: bool = False,
        chunk_entities: int = 10_000,
        timeout_s: float = 30.0,
    ) -> None:
        self.url, self.prefix, self.field_hash, self.chunk = url, prefix, field_hash, max(1, chunk_entities)
        self.client = _client(url, cluster, timeout_s)
        self.round_trips = 0  # pipelines sent (one per chunk; per node per chunk for a cluster)
        self.decode_errors = 0  # values that did not fit their spec (read as missing)
        self.first_decode_error = ""

    def _count_decode_error(self, key: EntityKey, name: str, reason: str) -> None:
        self.decode_errors += 1
        self.first_decode_error = self.first_decode_error or f"{key[0]}={key[1]} {name}: {reason}"

    def read(self, wanted: Wanted) -> Found:
        keys = list(wanted)
        out: Found = {}
        try:
            for start in range(0, len(keys), self.chunk):
                part = keys[start : start + self.chunk]
                out.update(decode_replies(part, wanted, self._hmgets(part, wanted), self._count_decode_error))
        except (RedisError, OSError) as exc:
            raise Unavailable(f"feature store {self.url} failed reading {len(keys)} entities: {exc}") from None
        return out

    def _hmgets(self, keys: list[EntityKey], wanted: Wanted) -> list[Any]:
        if isinstance(self.client, RedisCluster):  # redis-py splits the pipeline per node
            pipe = self.client.pipeline(transaction=False)
            for entity, entity_id in keys:
                names = tuple(s.name for s in wanted[(entity, entity_id)])
                pipe.hmget(entity_key(self.prefix, entity, entity_id), field_lists(names, self.field_hash))
            self.round_trips += 1
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            packed = pack_hmgets(keys, wanted, self.prefix, self.field_hash)
            conn.send_packed_command([packed], check_health=False)  # the blocking client takes a list of parts
            replies = read_replies_blocking(conn, len(keys))  # an error reply (WRONGTYPE) in its place
        except BaseException:
            conn.disconnect()  # unread replies would poison the next user of this connection
            raise
        finally:
            pool.release(conn)
        self.round_trips += 1
        return replies

    def close(self) -> None:
        self.client.close()


def open_reader(settings: FeatureSettings, chunk_entities: int = 10_000) -> FeatureReader:
    """The configured backend as a blocking reader (memory: the JSONL file, loaded here)."""
    if settings.backend == "none":
        return NullReader()
    if settings.backend == "memory":
        return MemoryReader(MemoryFeatureStore.from_jsonl(settings.memory_file))
    if settings.backend == "feast-redis":
        return FeastReader(settings.url, settings.feast, chunk_entities)
    return RedisReader(
        settings.url, settings.prefix, settings.field_hash, settings.backend == "redis-cluster", chunk_entities
    )


class SnapshotWriter:
    """Entities into Redis under `prefix` (a new snapshot: e.g. sibyl:v2 beside the serving sibyl:v1), the
    layout, encoding and TTL of `sibyl features load`. Chunks before a bad row are written; HSET overwrites, so
    a re-run after a fix is safe."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        cluster: bool = False,
        field_hash: FieldHash = "xxh32",
        ttl_s: float | None = None,
        specs: Mapping[str, FeatureSpec | Dtype] | None = None,
        chunk_rows: int = 1000,
        timeout_s: float = 30.0,
    ) -> None:
        if chunk_rows < 1 or (ttl_s is not None and ttl_s <= 0):
            raise InvalidArgument("chunk_rows must be >= 1 and ttl_s > 0")
        self.url, self.prefix, self.field_hash, self.ttl_s = url, prefix, field_hash, ttl_s
        self.specs, self.chunk_rows = specs, chunk_rows
        self.client = _client(url, cluster, timeout_s)
        self.written = 0
        self._names: set[str] = set()

    def write(self, rows: Iterable[Row]) -> int:
        """Write every row; returns the entities written by this call."""
        before = self.written
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= self.chunk_rows:
                self._flush(chunk)
                chunk = []
        self._flush(chunk)
        return self.written - before

    def _flush(self, chunk: list[Row]) -> None:
        if not chunk:
            return
        new = {n for _, _, features in chunk for n in features} - self._names
        try:
            if new:
                self._names |= new
                check_collisions(sorted(self._names), self.field_hash)
            encoded = encode_rows(chunk, self.prefix, self.field_hash, self.specs)
        except EncodeError as exc:
            raise InvalidArgument(f"{exc}; {self.written} entities before this chunk were written") from None
        pipe = self.client.pipeline(transaction=False)
        count = queue_writes(pipe, encoded, self.ttl_s)
        try:
            if count:
                pipe.execute()
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"redis {self.url} failed writing a chunk of {len(chunk)} entities ({exc}); {self.written} "
                "before it were written; re-run (HSET is idempotent)"
            ) from None
        self.written += count

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rows_of(records: Iterable[Any], entity: str, id_column: str) -> Iterator[Row]:
    """(entity, id, {feature: value}) from records (Spark Rows, dicts): every other column is a feature; nulls
    are not written, lists are vectors, ids become strings (42 -> "42", as `sibyl features load` reads them)."""
    for number, record in enumerate(records, start=1):
        data = record.asDict() if hasattr(record, "asDict") else record
        entity_id = data.get(id_column)
        where = f"row {number}"
        if entity_id is None or str(entity_id) == "":
            raise InvalidArgument(f"{where}: empty entity id in column {id_column!r}")
        try:
            values = _values(where, ((k, v) for k, v in data.items() if k != id_column), _parquet_value)
        except BadInput as exc:
            raise InvalidArgument(str(exc)) from None
        yield entity, str(entity_id), values


def write_partition(records: Iterable[Any], *, entity: str, id_column: str | None = None, **writer: Any) -> int:
    """One partition into Redis: `df.foreachPartition(functools.partial(write_partition, url=..., prefix=...,
    entity="consumer_id"))`. writer: SnapshotWriter's arguments. Returns the entities written."""
    with SnapshotWriter(**writer) as out:
        return out.write(rows_of(records, entity, id_column or entity))


class SnapshotTarget(TypedDict, total=False):
    """The keyword arguments of an engine's write_features (sibyl.batch.spark, sibyl.batch.ray)."""

    entity: Required[str]  # the entity every row is, e.g. "consumer_id"
    url: Required[str]  # Redis URL
    prefix: Required[str]  # the new snapshot's key prefix: switch features.prefix to it once written
    id_column: str | None  # the column of entity ids (default: the entity's name)
    ttl_s: float | None  # expire the keys after this long (default: never)
    store_url: str | None  # a model store whose manifests give the dtypes (default: from the values)
    cluster: bool  # the rest are SnapshotWriter's
    field_hash: FieldHash
    chunk_rows: int
    timeout_s: float


def partition_options(**target: Unpack[SnapshotTarget]) -> dict[str, Any]:
    """write_partition's keyword arguments for an engine's write_features (Spark, Ray): dtypes come from the
    manifests in store_url (as `sibyl features load` takes them from the model store), else from the values."""
    writer: dict[str, Any] = dict(target)
    store_url = writer.pop("store_url", None)
    specs = specs_from_store(ModelStoreSettings(url=store_url)) if store_url else None
    return {**writer, "specs": specs}
