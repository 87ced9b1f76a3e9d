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
                for entity_id in {ids[r] for r in missing}:
                    if entity_id:
                        p.wanted.setdefault((spec.entity, entity_id), []).append(spec)
    return p


def fill(p: Plan, batch: RowBatch, fetched: dict[EntityKey, dict[str, FeatureValue]]) -> int:
    """Put fetched values into the blocks; returns how many (row, feature) values came from the store."""
    found = 0
    for key, spec in p.specs.items():
        missing = p.missing[key]
        if spec.entity is None or len(missing) == 0:
            continue
        block = p.blocks[key]
        ids = batch.entity_ids(spec.entity)
        if isinstance(ids, str):
            value = fetched.get((spec.entity, ids), {}).get(spec.name)
            if value is not None:
                block[missing] = value
                found += len(missing)
        elif ids is not None:
            got = [(r, fetched.get((spec.entity, ids[r]), {}).get(spec.name)) for r in missing]
            hits = [(r, v) for r, v in got if v is not None]
            if hits:
                rows, values = zip(*hits, strict=True)
                block[list(rows)] = np.asarray(values, dtype=np.float32).reshape(len(rows), spec.dim)
                found += len(hits)
        p.missing[key] = np.flatnonzero(np.isnan(block).any(axis=1))
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
