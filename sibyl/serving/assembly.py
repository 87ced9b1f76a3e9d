"""Build each model's input matrix: request values, then feature-store values, then defaults.

1. `plan()` gathers every column of every distinct feature the call's models take into one float32 matrix
   (NaN where the request gave nothing), and collects the (entity, id) -> features still missing,
   deduplicated across rows and models, so the store is asked once per request.
2. `fill()` writes the fetched values into that matrix.
3. `matrix()` picks a model's columns in manifest order (one gather) and puts that model's defaults where
   values are still missing; `defaulted()` reports which rows of which features used a default.

The work is a fixed number of numpy calls per request plus a Python step per *missing entity feature*, not
per row, feature or value: per-row ids are coded (decode.CodedIds), so a batch of a million rows from a thousand
stores costs a thousand dictionary look-ups. Up to few_rows.FEW_ROWS rows the gathers go row by row instead
(few_rows says why: the GIL). The batch scorer (sibyl.batch) runs the same three steps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from sibyl.features.base import EntityKey, FeatureValue
from sibyl.models.manifest import FeatureSpec
from sibyl.models.runtime import OnnxModel
from sibyl.serving.decode import RowBatch
from sibyl.serving.few_rows import distinct, put_columns, put_rows, take_columns, take_rows

SpecKey = tuple[str, str | None, str, int]  # name, entity, dtype, dim: one block of columns per distinct feature
_EMPTY: dict[str, FeatureValue] = {}
_NAN = float("nan")
_LAYOUTS_MAX = 256
REDUCEAT_MAX_ROWS = 256  # Plan.refresh_missing: where one reduceat stops being the cheaper way


def spec_key(spec: FeatureSpec) -> SpecKey:
    return (spec.name, spec.entity, spec.dtype, spec.dim)


@dataclass(frozen=True)
class EntityGroup:
    entity: str
    slots: tuple[int, ...]  # feature indices in the plan
    specs: tuple[FeatureSpec, ...]
    columns: np.ndarray  # their columns in the plan, in order


@dataclass(frozen=True)
class Layout:
    """Where each distinct feature of a set of models sits; the same for every call with those models."""

    manifests: tuple[object, ...]  # held so the id()s in the cache key stay unique while cached
    specs: tuple[FeatureSpec, ...]
    columns: list[str]  # every column, in plan order (a list: a request whose names equal it needs no gather)
    starts: np.ndarray  # first column of each feature
    entity_groups: tuple[EntityGroup, ...]  # features that live in the feature store, by entity
    model_columns: tuple[np.ndarray, ...]  # per model: its columns in the plan, in manifest order
    model_slots: tuple[np.ndarray, ...]  # per model: its features in the plan
    model_whole: tuple[bool, ...]  # per model: its columns are the plan's, in plan order (no gather needed)
    wide: tuple[tuple[int, int, int], ...]  # (feature, first column, dim) of every feature wider than one column


_layouts: OrderedDict[tuple[int, ...], Layout] = OrderedDict()


def layout(models: list[OnnxModel]) -> Layout:
    key = tuple(id(m.manifest) for m in models)
    cached = _layouts.get(key)
    if cached is not None:
        _layouts.move_to_end(key)
        return cached
    slots: dict[SpecKey, int] = {}
    specs: list[FeatureSpec] = []
    for model in models:
        for spec in model.manifest.inputs:
            if spec_key(spec) not in slots:
                slots[spec_key(spec)] = len(specs)
                specs.append(spec)
    starts = np.cumsum([0] + [spec.dim for spec in specs[:-1]]).astype(np.intp)
    model_columns = tuple(
        np.concatenate(
            [np.arange(starts[slots[spec_key(f)]], starts[slots[spec_key(f)]] + f.dim) for f in m.manifest.inputs]
        )
        for m in models
    )
    width = int(sum(spec.dim for spec in specs))
    built = Layout(
        manifests=tuple(m.manifest for m in models),
        specs=tuple(specs),
        columns=[c for spec in specs for c in spec.columns],
        starts=starts,
        entity_groups=_entity_groups(specs, starts),
        model_columns=model_columns,
        model_slots=tuple(np.array([slots[spec_key(f)] for f in m.manifest.inputs], np.intp) for m in models),
        model_whole=tuple(len(c) == width and bool((c == np.arange(width)).all()) for c in model_columns),
        wide=tuple((j, int(starts[j]), spec.dim) for j, spec in enumerate(specs) if spec.dim > 1),
    )
    _layouts[key] = built
    if len(_layouts) > _LAYOUTS_MAX:
        _layouts.popitem(last=False)
    return built


def _entity_groups(specs: list[FeatureSpec], starts: np.ndarray) -> tuple[EntityGroup, ...]:
    by_entity: dict[str, list[int]] = {}
    for j, spec in enumerate(specs):
        if spec.entity is not None:
            by_entity.setdefault(spec.entity, []).append(j)
    return tuple(
        EntityGroup(
            entity,
            tuple(slots),
            tuple(specs[j] for j in slots),
            np.concatenate([np.arange(starts[j], starts[j] + specs[j].dim) for j in slots]),
        )
        for entity, slots in by_entity.items()
    )


@dataclass
class Plan:
    layout: Layout
    models: list[OnnxModel]
    values: np.ndarray  # [N, columns] float32; NaN = still missing
    missing: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # [N, features]
    wanted: dict[EntityKey, list[FeatureSpec]] = field(default_factory=dict)
    from_request: int = 0  # (row, feature) values the request carried
    complete: bool = False  # nothing missing: no fetch, no defaults

    def refresh_missing(self) -> None:
        """A feature is missing in a row when any of its columns is NaN. Up to REDUCEAT_MAX_ROWS rows, one reduceat
        over every column (one numpy call); above, the first column of every feature, then the rest of the wide
        ones (the strided reduceat then costs more: docs/performance.md#ids-only-calls)."""
        nan = np.isnan(self.values)
        if not self.layout.specs:
            self.missing = nan
            return
        if nan.shape[0] <= REDUCEAT_MAX_ROWS:
            self.missing = np.logical_or.reduceat(nan, self.layout.starts, axis=1)
            return
        missing = nan[:, self.layout.starts]
        for j, start, dim in self.layout.wide:
            missing[:, j] |= nan[:, start + 1 : start + dim].any(axis=1)
        self.missing = missing


def plan(batch: RowBatch, models: Iterable[OnnxModel]) -> Plan:
    models = list(models)
    lay = layout(models)
    n, absent = batch.num_rows, len(batch.names)
    if batch.names == lay.columns and not np.isnan(batch.values).any():
        # The common call: every column, in this order, none missing (a V2 whole-row tensor, a full dense
        # request). The request's matrix is the plan's (read-only: nothing will be filled in).
        return _complete_plan(lay, models, batch.values)
    if not absent and lay.specs:  # the request carries ids only (a Feast-style call): every feature is missing
        return _empty_plan(batch, lay, models)
    index = batch.index
    columns = [index.get(c, absent) for c in lay.columns]
    if absent in columns:  # a column the request lacks reads the NaN column padded on
        source = np.concatenate([batch.values, np.full((n, 1), np.nan, np.float32)], axis=1)
    else:
        source = batch.values
        if not np.isnan(source).any():  # every column, in another order (map rows): one gather, nothing missing
            return _complete_plan(lay, models, take_columns(source, columns))
    p = Plan(lay, models, take_columns(source, columns))  # one gather, C order; the request stays untouched
    p.refresh_missing()
    p.from_request = p.missing.size - int(np.count_nonzero(p.missing))
    any_missing = cast(list[bool], p.missing.any(axis=0).tolist())
    p.complete = not any(any_missing)
    _want(p, batch, any_missing)
    return p


def _empty_plan(batch: RowBatch, lay: Layout, models: list[OnnxModel]) -> Plan:
    """A plan for a request that names none of the features: every value missing, no NaN scan needed."""
    n = batch.num_rows
    values = np.full((n, len(lay.columns)), _NAN, np.float32)
    p = Plan(lay, models, values, np.ones((n, len(lay.specs)), bool))
    _want(p, batch, [True] * len(lay.specs))
    return p


def _want(p: Plan, batch: RowBatch, any_missing: list[bool]) -> None:
    """p.wanted: each entity's missing features, once per distinct id among the rows that lack them."""
    for group in p.layout.entity_groups:
        needed = [spec for j, spec in zip(group.slots, group.specs, strict=True) if any_missing[j]]
        ids = batch.entity_ids(group.entity) if needed else None
        if isinstance(ids, str):
            p.wanted[(group.entity, ids)] = needed
        elif ids is not None and len(ids.codes) == 1:  # one row, and it lacks them (needed): no numpy
            if ids.values[0]:
                p.wanted[(group.entity, ids.values[0])] = needed
        elif ids is not None:
            lacking = take_columns(p.missing, group.slots).any(axis=1)
            for code in distinct(ids.codes if lacking.all() else ids.codes[lacking], len(ids.values)).tolist():
                if ids.values[code]:
                    p.wanted[(group.entity, ids.values[code])] = needed


def _complete_plan(lay: Layout, models: list[OnnxModel], values: np.ndarray) -> Plan:
    """A plan with every feature of every row given: nothing to fetch, nothing to default."""
    missing = np.zeros((values.shape[0], len(lay.specs)), bool)
    return Plan(lay, models, values, missing, from_request=missing.size, complete=True)


def fill(p: Plan, batch: RowBatch, fetched: dict[EntityKey, dict[str, FeatureValue]]) -> int:
    """Write fetched values into the plan; returns how many (row, feature) values came from the store."""
    if not fetched:
        return 0
    before = int(np.count_nonzero(p.missing))
    for group in p.layout.entity_groups:
        ids = batch.entity_ids(group.entity)
        if ids is None:
            continue
        current = take_columns(p.values, group.columns)  # a copy of this entity's columns
        holes = np.isnan(current)
        if not holes.any():
            continue
        if isinstance(ids, str) or len(ids.codes) == 1:  # one id for every row: no table, no gather
            shared = fetched.get((group.entity, ids if isinstance(ids, str) else ids.values[0]))
            if not shared:
                continue
            np.copyto(current, _flatten_found([shared], group.specs), where=holes)
        else:  # one table row per distinct entity, then one gather to the rows
            rows = np.flatnonzero(holes.any(axis=1))
            codes = ids.codes[rows]
            used = distinct(codes, len(ids.values))
            found = [fetched.get((group.entity, ids.values[c]), _EMPTY) for c in used.tolist()]
            table = _flatten_found(found, group.specs)
            position = np.zeros(len(ids.values), np.intp)
            position[used] = np.arange(len(used))
            part = take_rows(current, rows)
            np.copyto(part, take_rows(table, position[codes]), where=take_rows(holes, rows))
            put_rows(current, rows, part)
        put_columns(p.values, group.columns, current)
    p.refresh_missing()
    p.complete = not p.missing.any()
    return before - int(np.count_nonzero(p.missing))


def _flatten_found(found_rows: list[dict[str, FeatureValue]], specs: tuple[FeatureSpec, ...]) -> np.ndarray:
    """Every row's values for specs as float32 [rows, columns] (NaN where the store had none): one Python pass
    over plain floats (a vector's numpy scalars would make np.asarray several times slower)."""
    width = sum(spec.dim for spec in specs)
    out = [_NAN] * (len(found_rows) * width)
    at = 0
    for found in found_rows:
        for spec in specs:
            value = found.get(spec.name)
            if value is not None:
                if spec.dim == 1:
                    out[at] = value  # type: ignore[assignment]  # dim 1: a float
                else:
                    out[at : at + spec.dim] = value.tolist()  # type: ignore[union-attr]  # dim > 1: a float32 vector
            at += spec.dim
    return np.asarray(out, np.float32).reshape(len(found_rows), width)


def defaulted(p: Plan) -> dict[str, np.ndarray]:
    """Feature name -> rows that fall back to the default (merged over entities sharing a name)."""
    out: dict[str, np.ndarray] = {}
    if p.complete:
        return out
    for j in np.flatnonzero(p.missing.any(axis=0)).tolist():
        name, rows = p.layout.specs[j].name, np.flatnonzero(p.missing[:, j])
        out[name] = np.union1d(out[name], rows) if name in out else rows
    return out


def matrix(p: Plan, model: OnnxModel) -> np.ndarray:
    """The model's float32 [N, columns] input, in manifest order, with its own defaults filled in. Read-only: with
    nothing to default and the plan's own columns, it is the plan's values (no copy)."""
    i = next(i for i, m in enumerate(p.models) if m is model)
    columns = p.layout.model_columns[i]
    complete = p.complete or not take_columns(p.missing, p.layout.model_slots[i]).any()
    if complete and p.layout.model_whole[i] and p.values.flags["C_CONTIGUOUS"]:
        return p.values
    m = take_columns(p.values, columns)  # one gather: a fresh C-order copy
    if complete:
        return m
    nan = np.isnan(m)
    if nan.any():
        np.copyto(m, np.broadcast_to(model.default_row, m.shape), where=nan)
    return m
