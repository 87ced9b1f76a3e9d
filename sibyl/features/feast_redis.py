"""Feast's Redis (or Redis Cluster) online store as a feature source: the keys `feast materialize` wrote, read
directly, one pipelined HMGET per entity for every view at once.

The layout and the Value decoding: feast_codec.py. Which Feast feature a model input is, and which join key an
entity is: `FeastSettings` (features.feast), kept out of the manifests (docs/features.md#feast says why).
A value older than its view's ttl (`_ts:<view>`) is missing: the default is used and flagged, and
`sibyl_feature_stale_total{view}` counts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast, get_args

from pydantic import BaseModel, Field, PrivateAttr, model_validator
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from sibyl.compat.redis_replies import ensure_connected, read_replies, send_packed
from sibyl.features.base import EntityKey, FeatureValue, Wanted
from sibyl.features.codec import DecodeError
from sibyl.features.feast_codec import JoinKeyType, field, key_maker, timestamp_s, to_feature, ts_field
from sibyl.features.feast_columns import BULK_MIN, decode_column
from sibyl.features.redis import OnDecodeError, _ignore
from sibyl.models.manifest import FeatureSpec

OnStale = Callable[[str, int], None]  # (view, values found stale)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{item!r} is not {what}")
        pairs[name.strip()] = value.strip()
    return pairs


class FeastSettings(BaseModel):
    """features.feast (SIBYL_FEATURES__FEAST__*): the Feast repo a `feast-redis` backend reads. The mappings are
    lists of "name=value" strings so that each is one repeatable flag or one env var (a JSON list)."""

    project: str = Field("", description="Feast project (feature_store.yaml `project`): part of every key.")
    entity_key_serialization_version: int = Field(3, ge=2, le=3, description="feature_store.yaml's; Feast's default 3.")
    cluster: bool = Field(
        False, description="features.url is a Redis Cluster node (Feast's redis_type: redis_cluster)."
    )
    features: list[str] = Field(
        default_factory=list,
        description="'input=view:feature': the Feast feature a model input is; an input named view__feature needs none.",
    )
    entities: list[str] = Field(
        default_factory=list,
        description="'entity=type' or 'entity=join_key:type' (int64, int32, string, bytes); default: same name, int64.",
    )
    ttl: list[str] = Field(
        default_factory=list, description="'view=seconds': the view's ttl; an older value counts as missing."
    )
    _refs: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    _joins: dict[str, tuple[str, JoinKeyType]] = PrivateAttr(default_factory=dict)
    _ttl_s: dict[str, float] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _parse(self) -> FeastSettings:
        for name, ref in _pairs(self.features, "'input=view:feature'").items():
            view, _, feature = ref.partition(":")
            if not view or not feature:
                raise ValueError(f"features.feast.features: {name}={ref}: {ref!r} is not a Feast ref 'view:feature'")
            self._refs[name] = (view, feature)
        for entity, spec in _pairs(self.entities, "'entity=type' or 'entity=join_key:type'").items():
            join_key, _, value_type = spec.rpartition(":")
            if value_type not in get_args(JoinKeyType):
                raise ValueError(
                    f"features.feast.entities: {entity}={spec}: type must be one of {get_args(JoinKeyType)}"
                )
            self._joins[entity] = (join_key or entity, cast(JoinKeyType, value_type))
        for view, seconds in _pairs(self.ttl, "'view=seconds'").items():
            try:
                self._ttl_s[view] = float(seconds)
            except ValueError:
                raise ValueError(f"features.feast.ttl: {view}={seconds}: not a number of seconds") from None
        return self

    @property
    def ttl_s(self) -> dict[str, float]:
        return self._ttl_s

    def ref(self, name: str) -> tuple[str, str] | None:
        """(view, feature) of a model input: the mapping, else Feast's full feature name 'view__feature'."""
        ref = self._refs.get(name)
        if ref is not None:
            return ref
        view, sep, feature = name.partition("__")
        return (view, feature) if sep and view and feature else None

    def mapped(self, name: str) -> bool:
        """The input has an entry in `features` (rather than a view__feature name or nothing)."""
        return name in self._refs

    def join(self, entity: str) -> tuple[str, JoinKeyType]:
        """(join key, its type) of a manifest entity."""
        return self._joins.get(entity, (entity, "int64"))


class Plan:
    """How one list of input names is read: HMGET fields (features, then the `_ts:` of each view with a ttl)."""

    def __init__(self, settings: FeastSettings, names: tuple[str, ...]) -> None:
        self.reads: list[tuple[int, str]] = []  # (index in the spec list, view) of each feature field, in order
        self.unmapped: list[str] = []
        fields: list[bytes] = []
        for index, name in enumerate(names):
            ref = settings.ref(name)
            if ref is None:
                self.unmapped.append(name)
                continue
            self.reads.append((index, ref[0]))
            fields.append(field(*ref))
        views = list(dict.fromkeys(view for _, view in self.reads))
        self.ttls = [(v, settings.ttl_s[v]) for v in views if settings.ttl_s.get(v, 0) > 0]
        fields += [ts_field(v) for v, _ in self.ttls]
        self.fields = fields
        self.head = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields)  # RESP field arguments, built once


Read = tuple[EntityKey, bytes, Plan]  # (entity, its Redis key, how its features are read)


@dataclass(frozen=True, slots=True)
class _Run:
    """The readable replies of one plan's reads: their entities, raw values, and the views found stale (per entity;
    None without a ttl), as FeastLayout decodes them."""

    plan: Plan
    specs: Sequence[FeatureSpec]
    keys: list[EntityKey]
    rows: list[list[Any]]
    stale: list[dict[str, int]] | None


class FeastLayout:
    """What a read needs besides a connection: the keys and fields to ask for, and the replies decoded. Shared by
    the server's store (below) and the batch reader (feast_bulk)."""

    def __init__(
        self, settings: FeastSettings, on_decode_error: OnDecodeError = _ignore, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings, self.clock = settings, clock
        self.on_decode_error = on_decode_error
        self.on_stale: OnStale = lambda view, count: None
        self._plan = lru_cache(maxsize=1024)(self._make_plan)
        self._keys: dict[str, Callable[[str], bytes]] = {}  # entity -> its key_maker

    def _make_plan(self, names: tuple[str, ...]) -> Plan:
        return Plan(self.settings, names)

    def key(self, entity: str, entity_id: str) -> bytes:
        """The Redis key of an entity; ValueError when the id does not fit the join key's type."""
        make = self._keys.get(entity)
        if make is None:
            fs = self.settings
            make = self._keys[entity] = key_maker(*fs.join(entity), fs.project, fs.entity_key_serialization_version)
        return make(entity_id)

    def plan_reads(self, wanted: Wanted) -> list[Read]:
        """One HMGET per entity with a readable id and at least one mapped input; the rest are reported."""
        reads: list[Read] = []
        last: object = None  # assembly.plan gives all ids of an entity one spec list: its plan is looked up once
        for ek, specs in wanted.items():
            if specs is not last:
                last, plan = specs, self._plan(tuple(s.name for s in specs))
            for name in plan.unmapped:
                self.on_decode_error(
                    ek, name, "no Feast feature ref: set features.feast.features or name it view__feature"
                )
            if not plan.fields:
                continue
            try:
                reads.append((ek, self.key(*ek), plan))
            except ValueError as exc:
                self.on_decode_error(ek, "*", f"{exc} (join key {self.settings.join(ek[0])[0]})")
        return reads

    def decode(self, reads: list[Read], replies: list[Any], wanted: Wanted) -> dict[EntityKey, dict[str, FeatureValue]]:
        """HMGET replies (in read order) to values per spec: stale, unreadable or absent values are missing."""
        out: dict[EntityKey, dict[str, FeatureValue]] = {}
        now = self.clock()
        start = 0
        while start < len(reads):  # runs of reads sharing one spec list (assembly.plan gives one per entity type)
            specs = wanted[reads[start][0]]
            end = start + 1
            while end < len(reads) and wanted[reads[end][0]] is specs:
                end += 1
            self._decode_run(reads[start:end], replies[start:end], specs, now, out)
            start = end
        return out

    def _decode_run(
        self,
        reads: list[Read],
        replies: list[Any],
        specs: Sequence[FeatureSpec],
        now: float,
        out: dict[EntityKey, dict[str, FeatureValue]],
    ) -> None:
        """Reads of one plan: unreadable entities reported, stale values dropped, the rest decoded."""
        plan = reads[0][2]
        keys: list[EntityKey] = []
        rows: list[list[Any]] = []
        for (ek, _, _), raws in zip(reads, replies, strict=True):
            if isinstance(raws, Exception):
                if isinstance(raws, ResponseError):  # e.g. WRONGTYPE: this entity is unreadable, not the request
                    self.on_decode_error(ek, "*", str(raws))
                    continue
                raise raws
            keys.append(ek)
            rows.append(raws)
        if not rows:
            return
        stale = [self._stale(plan, raws, now) for raws in rows] if plan.ttls else None
        run = _Run(plan, specs, keys, rows, stale)
        if len(rows) < BULK_MIN:  # a few entities (a 1-row call): value by value, as the column path would
            self._decode_few(run, out)
        else:
            self._decode_columns(run, out)
        if stale is not None:
            counts: dict[str, int] = {}
            for found in stale:
                for view, count in found.items():
                    counts[view] = counts.get(view, 0) + count
            for view, count in counts.items():
                if count:
                    self.on_stale(view, count)

    def _decode_few(self, run: _Run, out: dict[EntityKey, dict[str, FeatureValue]]) -> None:
        """Each value through feast_codec.to_feature: below BULK_MIN values a feature, decode_column does the same
        per value, and its column bookkeeping costs more than the values (docs/features.md#feast-values)."""
        plan, specs, stale = run.plan, run.specs, run.stale
        for i, (ek, raws) in enumerate(zip(run.keys, run.rows, strict=True)):
            values: dict[str, FeatureValue] = {}
            for j, (index, view) in enumerate(plan.reads):
                raw = raws[j]
                if raw is None:
                    continue
                if stale is not None and view in stale[i]:
                    stale[i][view] += 1
                    continue
                spec = specs[index]
                try:
                    value = to_feature(spec, raw)
                except DecodeError as exc:
                    self.on_decode_error(ek, spec.name, f"Feast value: {exc}")
                    continue
                if value is not None:
                    values[spec.name] = value
            if values:
                out[ek] = values

    def _decode_columns(self, run: _Run, out: dict[EntityKey, dict[str, FeatureValue]]) -> None:
        """Each feature decoded across all its entities at once (feast_columns)."""
        plan, specs, keys, rows, stale = run.plan, run.specs, run.keys, run.rows, run.stale
        names: list[str] = []
        columns: list[list[FeatureValue | None]] = []
        for j, (index, view) in enumerate(plan.reads):
            spec = specs[index]
            names.append(spec.name)
            raws_j = [raws[j] for raws in rows]
            if stale is not None:
                for i, raw in enumerate(raws_j):
                    if raw is not None and view in stale[i]:
                        stale[i][view] += 1
                        raws_j[i] = None
            at: Sequence[int] = range(len(rows))
            present = raws_j
            if None in raws_j:  # absent fields (and stale values) are left out of the decoding
                at = [i for i, raw in enumerate(raws_j) if raw is not None]
                present = [raws_j[i] for i in at]
            decoded, errors = decode_column(spec, present)
            column = decoded
            if present is not raws_j:
                column = [None] * len(rows)
                for i, value in zip(at, decoded, strict=True):
                    column[i] = value
            for k, exc in errors.items():
                self.on_decode_error(keys[at[k]], spec.name, f"Feast value: {exc}")
            columns.append(column)
        for ek, row in zip(keys, zip(*columns, strict=True), strict=True):
            values = {name: value for name, value in zip(names, row, strict=True) if value is not None}
            if values:
                out[ek] = values

    def _stale(self, plan: Plan, raws: list[Any], now: float) -> dict[str, int]:
        """{view: 0} for each view whose event timestamp is older than its ttl (no timestamp: not stale, as Feast)."""
        stale: dict[str, int] = {}
        for (view, ttl), raw in zip(plan.ttls, raws[len(plan.reads) :], strict=True):
            try:
                ts = timestamp_s(raw)
            except DecodeError:
                ts = None
            if ts is not None and now - ts > ttl:
                stale[view] = 0
        return stale


class FeastRedisStore(FeastLayout):
    """The server's source: one pipelined HMGET per entity, all entities in one write (one round trip to a
    standalone Redis; one per node holding a wanted entity, sent together, on a cluster)."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        settings: FeastSettings,
        on_decode_error: OnDecodeError = _ignore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, on_decode_error, clock)
        self.client = client
        # Once: isinstance against RedisCluster goes through typing.Protocol's check, on every fetch otherwise.
        self._cluster = isinstance(client, RedisCluster)
        self.name = "feast-redis-cluster" if self._cluster else "feast-redis"
        self.round_trips = 0  # pipeline executions (per node for a cluster): tests count these
        self._idle: list[Any] = []  # connected, nothing unread: see _pipeline

    async def fetch(self, wanted: Wanted) -> dict[EntityKey, dict[str, FeatureValue]]:
        reads = self.plan_reads(wanted)
        if not reads:
            return {}
        if self._cluster:  # redis-py splits the pipeline per node, sends them together
            cluster = cast(RedisCluster, self.client)
            pipe = cluster.pipeline(transaction=False)
            for _, key, plan in reads:
                pipe.hmget(key, plan.fields)
            replies = await pipe.execute(raise_on_error=False)
            nodes = (cluster.get_node_from_key(cast(str, key)) for _, key, _ in reads)  # bytes keys work too
            self.round_trips += len({node.name for node in nodes if node is not None})
        else:
            replies = await self._pipeline(cast(Redis, self.client), reads)
            self.round_trips += 1
        return self.decode(reads, replies, wanted)

    async def _pipeline(self, client: Redis, reads: list[Read]) -> list[Any]:
        """Every HMGET packed into one write, every reply read in bulk, on a connection of the store's own.

        The store keeps its idle connections itself (made by the client's pool, which does not hand them out): a
        pool checkout and release (a lock, connection-count events) and send_packed_command's per-write timer cost
        more than the round trip of a 1-row call (docs/features.md#measured); ensure_connected keeps the pool's
        checks (reconnect after the server closed the connection), and the fetcher's budget bounds the whole
        round trip."""
        conn = self._idle.pop() if self._idle else client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await ensure_connected(conn)
            await send_packed(conn, pack_hmgets(reads))
            replies = await read_replies(conn, len(reads))
        except BaseException:  # cancelled or failed mid-read: unread replies would poison the next user
            await conn.disconnect()
            raise
        finally:
            self._idle.append(conn)  # a disconnected one connects again on its next use
        return replies

    async def read_raw(self, entity: str, entity_id: str) -> dict[bytes, bytes]:
        """Every field of one entity's hash, every view (for `sibyl features get`)."""
        fields = await self.client.hgetall(cast(str, self.key(entity, entity_id)))
        return cast(dict[bytes, bytes], fields)  # bytes: connect() leaves decode_responses off

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()
        await self.client.aclose()


def pack_hmgets(reads: list[Read]) -> bytes:
    """Every entity's HMGET as one RESP byte string (the field part of each plan is packed once, in Plan)."""
    return b"".join(
        b"*%d\r\n$5\r\nHMGET\r\n$%d\r\n%s\r\n%s" % (len(plan.fields) + 2, len(key), key, plan.head)
        for _, key, plan in reads
    )
