"""`sibyl features load FILE`, `sibyl features get ENTITY ID` and `sibyl features check`: the bulk loader, an
on-call look-up, and a check of a Feast mapping against Feast's registry and store."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

from sibyl.cli.progress import Progress
from sibyl.config import FeatureSettings, Settings
from sibyl.errors import ConfigError, InvalidArgument, NotFound, Unavailable
from sibyl.features import build_store
from sibyl.features.codec import DecodeError, decode, decode_json, describe, entity_key, field_name
from sibyl.features.feast_check import Finding, check_mapping, check_store, suggest
from sibyl.features.feast_codec import decode_value, timestamp_s, to_feature
from sibyl.features.feast_codec import field as feast_field
from sibyl.features.feast_redis import FeastRedisStore
from sibyl.features.feast_registry import read_registry
from sibyl.features.loader import LoadReport, load
from sibyl.features.memory import MemoryFeatureStore
from sibyl.features.redis import RedisFeatureStore, connect
from sibyl.features.sources import FORMATS, read_rows
from sibyl.features.specs import specs_from_manifest, specs_from_store
from sibyl.models.manifest import FeatureSpec


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "features", help="load features into Redis, look one entity up, check a Feast mapping"
    )
    sub = group.add_subparsers(dest="features_command", required=True)

    p = sub.add_parser(
        "load",
        help="bulk-load a CSV/Parquet/JSONL file into Redis",
        description="Columns: an entity id column (the first, or --entity-column) and one column per feature. "
        "CSV vectors are ';'-separated, e.g. 0.1;0.2;0.3; empty cells are skipped. Rewriting is idempotent.",
    )
    p.add_argument("file", nargs="?", help="data file (default: features.memory_file, JSONL)")
    p.add_argument("--format", choices=FORMATS, help="default: from the file name")
    p.add_argument("--entity", help="entity type, e.g. consumer_id (default: the id column's name)")
    p.add_argument("--entity-column", help="column holding the entity id (default: the first)")
    p.add_argument("--ttl", type=float, help="expire each entity after SECONDS")
    p.add_argument("--chunk-rows", type=int, default=1000, help="entities per pipelined write (default 1000)")
    p.add_argument("--manifest", action="append", default=[], help="model manifest.json giving dtypes (repeatable)")
    p.add_argument("--int-list", action="append", default=[], metavar="NAME", help="store NAME as int32 list")
    p.add_argument("--dry-run", action="store_true", help="read and check every row, write nothing")
    _connection_flags(p)
    p.set_defaults(handler=cmd_load)

    g = sub.add_parser("get", help="print one entity's features as the server would read them")
    g.add_argument("entity", help="entity type, e.g. consumer_id")
    g.add_argument("id", help="entity id, e.g. 42")
    g.add_argument("--feature", action="append", default=[], metavar="NAME", help="only these (repeatable)")
    g.add_argument("--json", action="store_true", help="print JSON")
    _connection_flags(g)
    g.set_defaults(handler=cmd_get)

    c = sub.add_parser(
        "check",
        help="check a feast-redis mapping against Feast's registry and the live store",
        description="Every entity input of the model store's manifests (and --manifest): its Feast ref, view, "
        "feature, type, join key and ttl against a Feast file registry (--registry), then a sample of the live "
        "store: values that do not decode, views not materialized, values older than their view's ttl. "
        "Exit status 1 when something is wrong.",
    )
    c.add_argument("--registry", help="Feast file registry, e.g. feature_repo/data/registry.db")
    c.add_argument("--manifest", action="append", default=[], help="model manifest.json to check (repeatable)")
    c.add_argument("--sample", type=int, default=100, help="entities of the live store to read (default 100; 0: none)")
    c.add_argument("--suggest", action="store_true", help="print a [features.feast] section built from --registry")
    _connection_flags(c)
    c.set_defaults(handler=cmd_check)


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="Redis URL (overrides features.url)")
    p.add_argument("--prefix", help="key prefix, e.g. sibyl:v2 (overrides features.prefix)")
    p.add_argument("--cluster", action="store_true", help="the URL is a Redis Cluster node")


def _feature_settings(args: argparse.Namespace, settings: Settings) -> FeatureSettings:
    update: dict[str, Any] = {}
    if settings.features.backend == "feast-redis":  # the URL and --cluster point at Feast's store
        update.update({"url": args.url} if args.url else {})
        if args.cluster:
            update["feast"] = settings.features.feast.model_copy(update={"cluster": True})
    elif args.url:
        update["url"] = args.url
        update["backend"] = "redis-cluster" if args.cluster else "redis"
    elif args.cluster:
        update["backend"] = "redis-cluster"
    if args.prefix:
        update["prefix"] = args.prefix
    return settings.features.model_copy(update=update)


# ---- load
def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    fs = _feature_settings(args, settings)
    if fs.backend not in ("redis", "redis-cluster") and not args.dry_run:
        raise ConfigError(
            f"features load writes to Redis but features.backend is {fs.backend!r}: "
            "pass --url redis://HOST:PORT/0 or set SIBYL_FEATURES__BACKEND=redis"
        )
    if args.chunk_rows < 1 or (args.ttl is not None and args.ttl <= 0):
        raise InvalidArgument("--chunk-rows must be >= 1 and --ttl > 0")
    path = args.file or fs.memory_file
    specs: dict[str, Any] = dict(specs_from_store(settings.model_store))
    for manifest in args.manifest:
        specs.update(specs_from_manifest(manifest))
    specs.update({name: "int_list" for name in args.int_list})
    try:
        rows = read_rows(path, args.format, args.entity, args.entity_column)
        report = asyncio.run(_load(fs, rows, specs, args))
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    verb = "checked" if args.dry_run else f"wrote to {fs.url} under {fs.prefix}:"
    print(f"{verb} {report.rows} entities in {report.seconds:.2f} s", file=sys.stderr)
    return 0


async def _load(fs: FeatureSettings, rows: Any, specs: dict[str, Any], args: argparse.Namespace) -> LoadReport:
    # A dry run never sends anything, so the client (lazy) never connects.
    client = connect(fs.url, cluster=fs.backend == "redis-cluster", timeout_s=5.0)
    store = RedisFeatureStore(client, fs.prefix, fs.field_hash)
    progress = Progress("loading", line=lambda n, rate, note: f"loading: {n} rows{note} ({rate:,.0f} rows/s)")
    try:
        return await load(
            store, rows, specs, args.ttl, args.chunk_rows,
            lambda report: progress.update_to(report.rows, f"up to {report.last}"), args.dry_run,
        )  # fmt: skip
    finally:
        progress.close()
        await store.close()


# ---- get
def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    fs = _feature_settings(args, settings)
    if fs.backend == "none":
        raise ConfigError("features.backend is 'none': there is no feature store to read")
    specs = specs_from_store(settings.model_store)
    found = asyncio.run(_get(fs, args.entity, args.id, args.feature, specs))
    if args.json:
        print(json.dumps({"entity": args.entity, "id": args.id, "features": found["values"]}, indent=2))
    else:
        print(found["header"])
        width = max((len(n) for n in found["values"]), default=0)
        for name, value in found["values"].items():
            print(f"  {name:<{width}}  {value}")
    return 0


def _show(value: Any) -> Any:
    """float32 values printed with the digits float32 holds (31.27, not 31.270000457763672)."""
    if isinstance(value, np.ndarray):
        return [float(f"{v:.7g}") for v in value.tolist()]
    return float(f"{value:.7g}")


async def _get(
    fs: FeatureSettings, entity: str, entity_id: str, names: list[str], specs: dict[str, FeatureSpec]
) -> dict[str, Any]:
    store = build_store(fs)
    try:
        if isinstance(store, MemoryFeatureStore):
            raw_json = store.entities.get((entity, entity_id))
            if raw_json is None:
                raise NotFound(f"{entity}={entity_id} is not in {fs.memory_file}")
            values = {n: _decode_json(specs.get(n), raw_json.get(n)) for n in (names or sorted(raw_json))}
            return {"header": f"{entity}={entity_id}  (memory: {fs.memory_file})", "values": values}
        if isinstance(store, FeastRedisStore):
            return await _get_feast(store, fs, entity, entity_id, names, specs)
        try:
            raw = await store.read_raw(entity, entity_id)
            ttl = await store.ttl_s(entity, entity_id) if raw else None
        except Exception as exc:  # redis-py connection/timeout errors
            raise Unavailable(f"cannot read {fs.url}: {exc}") from None
        key = entity_key(fs.prefix, entity, entity_id)
        if not raw:
            raise NotFound(f"{entity}={entity_id} is not in {fs.url} (no key {key}); check --prefix / features.prefix")
        by_field = {field_name(n, fs.field_hash): n for n in [*specs, *names]}
        values = {}
        for fld, data in raw.items():
            name = by_field.get(fld)
            if names and name not in names:
                continue
            label = name or f"<field 0x{fld.hex()}>"
            values[label] = _decode_raw(specs.get(name) if name else None, data)
        for n in names:
            values.setdefault(n, "(absent: the server would use the default)")
        header = f"{entity}={entity_id}  key {key}  {len(raw)} fields  ttl {'none' if ttl is None else f'{ttl:.0f} s'}"
        return {"header": header, "values": values}
    finally:
        await store.close()


async def _get_feast(
    store: FeastRedisStore,
    fs: FeatureSettings,
    entity: str,
    entity_id: str,
    names: list[str],
    specs: dict[str, FeatureSpec],
) -> dict[str, Any]:
    """One entity of a Feast online store: each input the manifests (or --feature) name, each view's event time."""
    try:
        raw = await store.read_raw(entity, entity_id)
    except ValueError as exc:
        raise InvalidArgument(f"{entity}={entity_id}: {exc} (features.feast.entities)") from None
    except Exception as exc:  # redis-py connection/timeout errors
        raise Unavailable(f"cannot read {fs.url}: {exc}") from None
    join_key, value_type = fs.feast.join(entity)
    where = f"Feast project {fs.feast.project!r}, {join_key} ({value_type})"
    if not raw:
        raise NotFound(f"{entity}={entity_id} is not in {fs.url} ({where}); check features.feast.project/entities")
    wanted = names or [n for n, s in specs.items() if s.entity == entity]
    by_field = {feast_field(*ref): (n, ref) for n in wanted if (ref := fs.feast.ref(n)) is not None}
    values: dict[str, Any] = {}
    for fld, data in raw.items():
        if fld.startswith(b"_ts:"):
            view, ts = fld[4:].decode(errors="replace"), timestamp_s(data)
            ttl = fs.feast.ttl_s.get(view, 0)
            age = None if ts is None else time.time() - ts
            stale = " STALE (older than the view's ttl: served as the default)" if age and 0 < ttl < age else ""
            values[f"_ts:{view}"] = "none" if age is None else f"{age:.0f} s ago{stale}"
            continue
        name, ref = by_field.get(fld, (None, None))
        if name is None:
            if not names:
                values[f"<field 0x{fld.hex()}>"] = _feast_value(None, data)
            continue
        values[f"{name} ({ref[0]}:{ref[1]})" if ref else name] = _feast_value(specs.get(name), data)
    for n in wanted:
        if not any(label.split(" ")[0] == n for label in values):
            values[n] = "(absent: the server would use the default)"
    return {"header": f"{entity}={entity_id}  {where}  {len(raw)} fields", "values": values}


def _feast_value(spec: FeatureSpec | None, data: bytes) -> Any:
    try:
        value = decode_value(data) if spec is None else to_feature(spec, data)
    except DecodeError as exc:
        return f"UNREADABLE: {exc} (the server treats it as missing)"
    return "(null: the server would use the default)" if value is None else _show(value)


# ---- check (feast-redis)
def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    fs = _feature_settings(args, settings)
    if fs.backend != "feast-redis":
        raise ConfigError(f"features check reads a Feast store; features.backend is {fs.backend!r}, not 'feast-redis'")
    specs = dict(specs_from_store(settings.model_store))
    for manifest in args.manifest:
        specs.update({n: s for n, s in specs_from_manifest(manifest).items() if s.entity is not None})
    inputs = sorted(specs.values(), key=lambda s: s.name)
    findings: list[Finding] = []
    if args.registry:
        try:
            registry = read_registry(args.registry, fs.feast.project)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        findings += check_mapping(fs.feast, registry, inputs)
        if args.suggest:
            print(suggest(fs.feast, registry, inputs))
    elif args.suggest:
        raise InvalidArgument("--suggest builds the settings from Feast's registry: pass --registry")
    if args.sample > 0:
        findings += asyncio.run(_check_store(fs, inputs, args.sample))
    for finding in findings:
        print(f"{finding.level:<8} {finding.text}")
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    print(f"{len(inputs)} inputs, {errors} errors, {warnings} warnings", file=sys.stderr)
    return 1 if errors else 0


async def _check_store(fs: FeatureSettings, inputs: list[FeatureSpec], sample: int) -> list[Finding]:
    store = build_store(fs)
    assert isinstance(store, FeastRedisStore)
    try:
        return await check_store(store, inputs, sample)
    except Exception as exc:  # redis-py connection/timeout errors
        raise Unavailable(f"cannot read {fs.url}: {exc}") from None
    finally:
        await store.close()


def _decode_raw(spec: FeatureSpec | None, data: bytes) -> Any:
    if spec is None:
        return describe(data)
    try:
        return _show(decode(spec, data))
    except DecodeError as exc:
        return f"UNREADABLE as {spec.dtype}[{spec.dim}]: {exc} (the server treats it as missing)"


def _decode_json(spec: FeatureSpec | None, value: Any) -> Any:
    if value is None:
        return "(absent: the server would use the default)"
    if spec is None:
        return value
    try:
        return _show(decode_json(spec, value))
    except DecodeError as exc:
        return f"UNREADABLE as {spec.dtype}[{spec.dim}]: {exc} (the server treats it as missing)"
