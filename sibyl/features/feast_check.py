"""`sibyl features check` for a feast-redis backend: the mapping against Feast's registry (missing views and
features, wrong types, join keys, on-demand views, ttls) and against a sample of the live store (values that
do not decode as their input, views nobody materialized, values older than their view's ttl)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

from sibyl.features.codec import DecodeError
from sibyl.features.feast_codec import field, timestamp_s, to_feature, ts_field
from sibyl.features.feast_redis import FeastRedisStore, FeastSettings
from sibyl.features.feast_registry import KEY_TYPES, LISTS, SCALARS, Registry
from sibyl.models.manifest import FeatureSpec


@dataclass(frozen=True)
class Finding:
    level: Literal["ok", "warning", "error"]
    text: str


def _type_name(value_type: int) -> str:
    return {**SCALARS, **LISTS}.get(value_type, f"type {value_type} (not a number or a list of numbers)")


def check_mapping(settings: FeastSettings, registry: Registry, specs: Iterable[FeatureSpec]) -> list[Finding]:
    """Each entity input of the manifests against the registry of settings.project."""
    out: list[Finding] = []
    for spec in specs:
        ref = settings.ref(spec.name)
        if ref is None or spec.entity is None:
            out.append(
                Finding("error", f"{spec.name}: no Feast ref (features.feast.features '{spec.name}=view:feature')")
            )
            continue
        view_name, feature = ref
        label = f"{spec.name} ({view_name}:{feature})"
        if view_name in registry.on_demand:
            out.append(Finding("error", f"{label}: an on-demand feature view; not supported (docs/features.md#feast)"))
            continue
        view = registry.views.get(view_name)
        if view is None:
            out.append(Finding("error", f"{label}: no feature view {view_name!r} in project {settings.project!r}"))
            continue
        value_type = view.features.get(feature)
        if value_type is None:
            out.append(Finding("error", f"{label}: view {view_name!r} has no feature {feature!r}"))
            continue
        fits = value_type in SCALARS if spec.dtype == "float" else value_type in LISTS
        if not fits:
            what = f"{spec.dtype}[{spec.dim}]" if spec.dtype != "float" else "float"
            out.append(Finding("error", f"{label}: Feast type {_type_name(value_type)} cannot feed a {what} input"))
            continue
        if len(view.entities) != 1 or view.entities[0] not in registry.entities:
            out.append(Finding("error", f"{label}: view {view_name!r} has entities {view.entities}; one is supported"))
            continue
        entity = registry.entities[view.entities[0]]
        wanted = (entity.join_key, KEY_TYPES.get(entity.value_type, f"type {entity.value_type}"))
        if settings.join(spec.entity) != wanted:
            out.append(
                Finding(
                    "error",
                    f"{label}: entity {spec.entity!r} reads join key {settings.join(spec.entity)}, Feast's is "
                    f"{wanted}: set features.feast.entities '{spec.entity}={wanted[0]}:{wanted[1]}'",
                )
            )
            continue
        if view.ttl_s > 0 and settings.ttl_s.get(view_name) != view.ttl_s:
            have = settings.ttl_s.get(view_name)
            out.append(
                Finding(
                    "warning",
                    f"{label}: view ttl is {view.ttl_s:g} s in the registry, {have if have is not None else 'unset'} "
                    f"in features.feast.ttl ('{view_name}={view.ttl_s:g}')",
                )
            )
            continue
        out.append(Finding("ok", f"{label}: {_type_name(value_type)}, join key {entity.join_key} ({wanted[1]})"))
    return out


async def check_store(store: FeastRedisStore, specs: list[FeatureSpec], sample: int = 100) -> list[Finding]:
    """Up to `sample` entity keys of the project from the live store: does each mapped input decode, is each view
    there, how many views' values are older than their ttl."""
    settings = store.settings
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", settings.project) if settings.project else ""
    keys: list[bytes] = []
    async for key in store.client.scan_iter(match=f"*{pattern}", count=1000):
        keys.append(cast(bytes, key))
        if len(keys) >= sample:
            break
    if not keys:
        return [Finding("error", f"no key of project {settings.project!r} in the store (materialized? right url?)")]
    hashes: list[dict[bytes, bytes]] = [
        cast(dict[bytes, bytes], await store.client.hgetall(cast(str, k))) for k in keys
    ]
    mapped = [(s, ref) for s in specs if (ref := settings.ref(s.name)) is not None]
    out: list[Finding] = []
    now = time.time()
    for view in dict.fromkeys(ref[0] for _, ref in mapped):
        having = [h for h in hashes if ts_field(view) in h]
        if not having:
            out.append(
                Finding("warning", f"view {view!r}: none of {len(keys)} sampled entities has it (materialized?)")
            )
            continue
        ttl = settings.ttl_s.get(view, 0)
        stale = sum(1 for h in having if ttl > 0 and (ts := timestamp_s(h[ts_field(view)])) and now - ts > ttl)
        level: Literal["ok", "warning"] = "warning" if stale else "ok"
        out.append(Finding(level, f"view {view!r}: {len(having)} of {len(keys)} sampled entities, {stale} stale"))
        for spec, (_, feature) in ((s, r) for s, r in mapped if r[0] == view):
            out.append(_values(spec, f"{spec.name} ({view}:{feature})", [h.get(field(view, feature)) for h in having]))
    return out


def _values(spec: FeatureSpec, label: str, raws: list[Any]) -> Finding:
    present = [r for r in raws if r is not None]
    bad: list[str] = []
    for raw in present:
        try:
            to_feature(spec, raw)
        except DecodeError as exc:
            bad.append(str(exc))
    if bad:
        return Finding("error", f"{label}: {len(bad)} of {len(present)} values do not fit {spec.dtype}: {bad[0]}")
    return Finding("ok", f"{label}: {len(present)} of {len(raws)} sampled entities hold a value")


def suggest(settings: FeastSettings, registry: Registry, specs: Iterable[FeatureSpec]) -> str:
    """A [features.feast] section for these inputs from the registry: join keys and types of their entities, a
    ref for each input that has none and whose name is a feature of exactly one view of its entity, and the ttl of
    every view used."""
    by_join_key = {e.join_key: e for e in registry.entities.values()}
    entities: dict[str, str] = {}
    refs: dict[str, str] = {}
    views: set[str] = set()
    for spec in specs:
        if spec.entity is None:
            continue
        join_key = settings.join(spec.entity)[0]
        entity = by_join_key.get(join_key)
        if entity is not None and entity.value_type in KEY_TYPES:
            entities[spec.entity] = f"{spec.entity}={entity.join_key}:{KEY_TYPES[entity.value_type]}"
        ref = settings.ref(spec.name)
        if settings.mapped(spec.name) and ref is not None:
            refs[spec.name] = f"{spec.name}={ref[0]}:{ref[1]}"
        elif ref is None and entity is not None:
            owners = [
                v.name for v in registry.views.values() if v.entities == [entity.name] and spec.name in v.features
            ]
            if len(owners) == 1:  # the input's name is a feature of exactly one view of its entity
                ref = (owners[0], spec.name)
                refs[spec.name] = f"{spec.name}={owners[0]}:{spec.name}"
        if ref is not None and ref[0] in registry.views:
            views.add(ref[0])
    ttls = [f"{v}={registry.views[v].ttl_s:g}" for v in sorted(views) if registry.views[v].ttl_s > 0]
    lines = [
        "[features.feast]",
        f"project = {json.dumps(settings.project)}",
        f"entities = {json.dumps(sorted(entities.values()))}",
        f"features = {json.dumps(sorted(refs.values()))}",
        f"ttl = {json.dumps(ttls)}",
    ]
    return "\n".join(lines) + "\n"
