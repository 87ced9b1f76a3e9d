"""A predictor's slices over archived rows in a batch job: the same labels the server and `sibyl monitor` give
(serving.slices), with the order-dependent choices made once for the whole period instead of as rows arrive.

- a feature with edges (Binned) and defaulted (Defaulted) depend on the row alone: serving.slices' own classes
  label them, so batch and stream agree row for row;
- a feature without edges: the stream labels the first `top` distinct values it sees; the batch job labels the
  `top` most frequent values of the period (ties: the smaller value). The same labels whenever the feature has at
  most `top` distinct values, which is what such a slice is for (a flag, a small code);
- an entity: the stream promotes an id once it is a heavy hitter and counts its earlier rows as "other"; the batch
  job labels the ids of at least max(EntityTop.MIN_COUNT, rows / (2 * top)) rows over the period, the `top` most
  frequent (ties: the smaller id), all of their rows. A documented difference: per entity the counts may differ.

`choose` decides these from per-value counts (which the engine computes, e.g. a Spark groupBy); `SlicePlan.labels`
then labels any batch of rows without state, so partitions label independently and in any order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sibyl.models.predictor import Slice
from sibyl.serving.decode import CodedIds
from sibyl.serving.slices import ALL, Binned, Defaulted, EntityTop, Vocabulary


@dataclass(frozen=True)
class SlicePlan:
    """One predictor's slices, with the values and ids labelled one by one chosen for the period."""

    slices: tuple[Slice, ...]
    values: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # valued slice name -> values labelled
    entities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # entity slice name -> ids labelled

    def columns(self, rows: ArchivedRows) -> list[np.ndarray]:
        """One object array of label texts per slice, "all" first: a label per distinct value, then numpy takes."""
        vocabulary = Vocabulary()
        columns = [np.full(rows.num_rows, ALL, dtype=object)]
        for spec in self.slices:
            if spec.entity is not None:
                chosen = set(self.entities.get(spec.name, ()))
                ids = np.array([i or "" for i in rows.entity_column(spec.entity)], dtype=object)
                columns.append(_per_value(ids, functools.partial(_entity_label, spec.name, chosen)))
            elif spec.defaulted is not None or spec.edges is not None:
                dim = Defaulted(spec, vocabulary) if spec.defaulted is not None else Binned(spec, vocabulary)
                columns.append(np.array(vocabulary.names, dtype=object)[dim.assign(rows)])
            else:
                assert spec.feature is not None
                known = set(self.values.get(spec.name, ()))
                values = rows.column(spec.feature)
                if values is None:
                    columns.append(np.full(rows.num_rows, f"{spec.name}=missing", dtype=object))
                    continue
                columns.append(_per_value(values, functools.partial(_value_label, spec.name, known)))
        return columns

    def labels(self, rows: ArchivedRows) -> list[list[str]]:
        """Per row: "all", then its label for each slice in order (as sibyl monitor keeps them)."""
        return [list(labels) for labels in zip(*(c.tolist() for c in self.columns(rows)), strict=True)]


def _entity_label(name: str, chosen: set[str], entity_id: str) -> str:
    return f"{name}=none" if not entity_id else f"{name}={entity_id}" if entity_id in chosen else f"{name}=other"


def _value_label(name: str, known: set[float], value: float) -> str:
    return f"{name}=missing" if value != value else f"{name}={value:g}" if value in known else f"{name}=other"


def _per_value(values: np.ndarray, label: Callable[[Any], str]) -> np.ndarray:
    """label(v) for each row's value, called once per distinct value (NaNs are one value)."""
    if values.size == 0:
        return np.zeros(0, dtype=object)
    distinct, inverse = np.unique(values, return_inverse=True)
    texts: np.ndarray = np.array([label(v) for v in distinct.tolist()], dtype=object)[inverse.ravel()]
    return texts


def order_dependent(slices: Sequence[Slice]) -> list[Slice]:
    """The slices whose labels depend on the whole period: entities and features without edges."""
    return [s for s in slices if s.entity is not None or (s.feature is not None and s.edges is None)]


def choose(slices: Sequence[Slice], counts: Mapping[str, Sequence[tuple[float | str | None, int]]]) -> SlicePlan:
    """The plan from each order-dependent slice's (value or id, rows) counts over the period (None: missing)."""
    values: dict[str, tuple[float, ...]] = {}
    entities: dict[str, tuple[str, ...]] = {}
    for spec in order_dependent(slices):
        seen = [(v, n) for v, n in counts.get(spec.name, ()) if v is not None and v == v and v != ""]
        if spec.entity is not None:
            total = sum(n for _, n in seen)
            floor = max(EntityTop.MIN_COUNT, total / (2 * spec.top))
            heavy = sorted(((str(v), n) for v, n in seen if n >= floor), key=lambda vn: (-vn[1], vn[0]))
            entities[spec.name] = tuple(v for v, _ in heavy[: spec.top])
        else:
            ranked = sorted(((float(v), n) for v, n in seen), key=lambda vn: (-vn[1], vn[0]))
            values[spec.name] = tuple(v for v, _ in ranked[: spec.top])
    return SlicePlan(tuple(slices), values, entities)


class ArchivedRows:
    """Rows of the archive as serving.slices.SliceRows reads them: feature columns (null: not logged), per-row
    entity ids and defaulted features."""

    def __init__(
        self,
        num_rows: int,
        features: Mapping[str, np.ndarray],
        entities: Mapping[str, list[str | None]],
        defaulted: list[list[str] | None],
    ) -> None:
        self._num_rows, self.features, self.entities = num_rows, features, entities
        by_feature: dict[str, list[int]] = {}
        for i, names in enumerate(defaulted):
            for name in names or ():
                by_feature.setdefault(name, []).append(i)
        self._defaulted = {name: np.asarray(rows, np.intp) for name, rows in by_feature.items()}

    @property
    def num_rows(self) -> int:
        return self._num_rows

    @property
    def defaulted(self) -> Mapping[str, np.ndarray]:
        return self._defaulted

    def column(self, feature: str) -> np.ndarray | None:
        return self.features.get(feature)

    def entity_ids(self, entity: str) -> str | CodedIds | None:
        ids = self.entities.get(entity)
        return None if ids is None else CodedIds.of([i or "" for i in ids])

    def entity_column(self, entity: str) -> list[str | None]:
        return list(self.entities.get(entity) or [None] * self._num_rows)
