"""Build each model's input matrix: request values, then feature-store values, then defaults.

1. `plan()` looks at every model's inputs once and collects the (entity, id) -> features that the request
   did not carry, deduplicated across rows and models, so the store is asked once per request.
2. `fill()` puts the fetched values into one column block per feature (NaN where still missing).
3. `Blocks.matrix()` lays a model's blocks out in manifest column order and puts that model's defaults
   where values are still missing; it also reports which rows of which features were defaulted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from sibyl.features.base import EntityKey, FeatureValue
from sibyl.inputs import RowBatch
from sibyl.models.manifest import FeatureSpec
from sibyl.models.runtime import OnnxModel

_EMPTY: dict[str, FeatureValue] = {}
_NAN = float("nan")
_NO_ROWS = np.empty(0, dtype=np.intp)
SpecKey = tuple[str, str | None, str, int]  # name, entity, dtype, dim: one block per distinct feature


def spec_key(spec: FeatureSpec) -> SpecKey:
    return (spec.name, spec.entity, spec.dtype, spec.dim)


@dataclass
class Plan:
    specs: dict[SpecKey, FeatureSpec] = field(default_factory=dict)
    blocks: dict[SpecKey, np.ndarray] = field(default_factory=dict)  # [N, dim] float32, NaN = missing
    missing: dict[SpecKey, np.ndarray] = field(default_factory=dict)  # row indices still missing
    wanted: dict[EntityKey, list[FeatureSpec]] = field(default_factory=dict)
    from_request: int = 0  # values the request carried


def plan(batch: RowBatch, models: Iterable[OnnxModel]) -> Plan:
    p = Plan()
    n = batch.num_rows
    for model in models:
        for spec in model.manifest.inputs:
            key = spec_key(spec)
            if key in p.specs:
                continue
            p.specs[key] = spec
            cols = [batch.index.get(c) for c in spec.columns]
            if all(c is not None for c in cols):
                block = batch.values[:, cols]  # fancy indexing copies: the request buffer stays untouched
                missing = np.flatnonzero(np.isnan(block).any(axis=1))
            else:
                block = np.full((n, spec.dim), np.nan, dtype=np.float32)
                missing = np.arange(n)
            p.blocks[key], p.missing[key] = block, missing
            p.from_request += n - len(missing)
            if spec.entity is None or len(missing) == 0:
                continue
            ids = batch.entity_ids(spec.entity)
            if isinstance(ids, str):
                p.wanted.setdefault((spec.entity, ids), []).append(spec)
            elif ids is not None:
                for entity_id in set(ids) if len(missing) == n else {ids[r] for r in missing}:
                    if entity_id:
                        p.wanted.setdefault((spec.entity, entity_id), []).append(spec)
    return p


def fill(p: Plan, batch: RowBatch, fetched: dict[EntityKey, dict[str, FeatureValue]]) -> int:
    """Put fetched values into the blocks; returns how many (row, feature) values came from the store."""
    found = 0
    per_row: dict[str, list[dict[str, FeatureValue]]] = {}  # entity -> each row's fetched features
    for key, spec in p.specs.items():
        missing = p.missing[key]
        ids = batch.entity_ids(spec.entity) if spec.entity is not None and len(missing) else None
        if ids is None:
            continue
        block = p.blocks[key]
        if isinstance(ids, str):
            value = fetched.get((spec.entity, ids), _EMPTY).get(spec.name)
            if value is None:
                continue
            block[missing] = value
            still = _NO_ROWS
        else:
            rows = per_row.get(spec.entity)  # type: ignore[arg-type]
            if rows is None:
                rows = per_row[spec.entity] = [fetched.get((spec.entity, i), _EMPTY) for i in ids]  # type: ignore[index]
            name = spec.name
            if spec.dim == 1:
                block[missing, 0] = np.fromiter((rows[r].get(name, _NAN) for r in missing), np.float32, len(missing))
            else:
                absent = np.full(spec.dim, np.nan, np.float32)
                block[missing] = np.stack([np.asarray(rows[r].get(name, absent), np.float32) for r in missing])
            still = missing[np.isnan(block[missing]).any(axis=1)]
        found += len(missing) - len(still)
        p.missing[key] = still
    return found


def defaulted(p: Plan) -> dict[str, np.ndarray]:
    """Feature name -> rows that fall back to the default (merged over entities sharing a name)."""
    out: dict[str, np.ndarray] = {}
    for (name, *_), rows in p.missing.items():
        if len(rows):
            out[name] = np.union1d(out[name], rows) if name in out else rows
    return out


def matrix(p: Plan, model: OnnxModel) -> np.ndarray:
    """The model's float32 [N, columns] input, in manifest order, with its own defaults filled in."""
    blocks = [p.blocks[spec_key(spec)] for spec in model.manifest.inputs]
    m = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0].copy()
    nan = np.isnan(m)
    if nan.any():
        np.copyto(m, np.broadcast_to(model.default_row, m.shape), where=nan)
    return np.ascontiguousarray(m, dtype=np.float32)
