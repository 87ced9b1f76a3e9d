"""Which slice each row of a call falls in, for every slice its predictor declares (models.predictor.Slice).

A predictor's slice labels live in one `Vocabulary` (label id -> "all", "distance=1-3", "store=s17", ...), so a
call's assignment is one int32 array [1 + slices, rows] of label ids whose first row is 0 ("all"): verdicts count
it with bincount, whatever the number of rows. Every kind of slice has a bounded set of labels
(docs/observability.md#slices):
- a feature with edges: its bins ("distance=<1", "distance=1-3", ..., "distance=>=10") and "missing";
- a feature without edges: its first `top` distinct values seen, then "other"; "missing";
- an entity: ids promoted for good once they are heavy hitters (`EntityTop`, a count-min sketch), at most `top`;
  every other id "other"; rows without an id "none";
- defaulted: "yes" when the row's feature fell back to its default, else "no".
Work per call is a fixed number of numpy calls per slice plus a dictionary step per distinct entity id or value, not
per row; a 1-row call (most calls) takes each slice's scalar path (`one`), a bisect or a dictionary look-up, where
numpy's fixed cost per call would dominate (docs/performance.md#verdicts). Slices are assigned on the records
thread only (one thread): the state here takes no lock.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from sibyl.models.predictor import Slice
from sibyl.serving.decode import CodedIds

ALL = "all"


class SliceRows(Protocol):
    """A call's rows, as slices read them."""

    @property
    def num_rows(self) -> int: ...

    @property
    def defaulted(self) -> Mapping[str, np.ndarray]:
        """feature -> rows that used its default."""
        ...

    def column(self, feature: str) -> np.ndarray | None:
        """The feature's value per row as the models saw it (defaults in), or None when no model took it."""
        ...

    def entity_ids(self, entity: str) -> str | CodedIds | None:
        """One id for every row, coded per-row ids, or None."""
        ...


class Vocabulary:
    """Label id <-> label text for one predictor. Only grows; every slice bounds what it adds."""

    def __init__(self) -> None:
        self.names: list[str] = [ALL]
        self._ids: dict[str, int] = {ALL: 0}

    def id(self, name: str) -> int:
        found = self._ids.get(name)
        if found is None:
            found = self._ids[name] = len(self.names)
            self.names.append(name)
        return found


def _number(x: float) -> str:
    return f"{x:g}"


class Binned:
    """A numeric feature cut by edges: [e_i, e_i+1) bins, below the first, from the last up, and missing."""

    def __init__(self, spec: Slice, vocabulary: Vocabulary) -> None:
        assert spec.feature is not None and spec.edges is not None
        self.feature, e = spec.feature, spec.edges
        names = [f"<{_number(e[0])}"] + [f"{_number(a)}-{_number(b)}" for a, b in itertools.pairwise(e)]
        names += [f">={_number(e[-1])}", "missing"]
        self.ids = np.array([vocabulary.id(f"{spec.name}={n}") for n in names], np.int32)
        self.id_list: list[int] = self.ids.tolist()
        self.edges = np.asarray(e, np.float64)
        self.edge_list = list(e)

    def assign(self, rows: SliceRows) -> np.ndarray:
        values = rows.column(self.feature)
        if values is None:
            return np.full(rows.num_rows, self.ids[-1], np.int32)
        bins = np.searchsorted(self.edges, values, side="right")  # NaN sorts last: fixed below
        bins[np.isnan(values)] = len(self.ids) - 1
        out: np.ndarray = self.ids[bins]
        return out

    def one(self, rows: SliceRows) -> int:
        values = rows.column(self.feature)
        value = float(values[0]) if values is not None else math.nan
        return self.id_list[-1] if math.isnan(value) else self.id_list[bisect_right(self.edge_list, value)]


class Valued:
    """A feature without edges (a flag, a small code): its first `top` distinct values, then "other"."""

    def __init__(self, spec: Slice, vocabulary: Vocabulary) -> None:
        assert spec.feature is not None
        self.feature, self.name, self.top, self.vocabulary = spec.feature, spec.name, spec.top, vocabulary
        self.known: dict[float, int] = {}
        self._sorted, self._sorted_ids = np.zeros(0, np.float64), np.zeros(0, np.int32)  # known, for searchsorted
        self.other = vocabulary.id(f"{spec.name}=other")
        self.missing = vocabulary.id(f"{spec.name}=missing")

    def assign(self, rows: SliceRows) -> np.ndarray:
        values = rows.column(self.feature)
        if values is None:
            return np.full(rows.num_rows, self.missing, np.int32)
        if len(self._sorted) != len(self.known):  # a value was admitted since: rebuild the look-up table
            ordered = sorted(self.known)
            self._sorted = np.array(ordered, np.float64)
            self._sorted_ids = np.array([self.known[v] for v in ordered], np.int32)
        out = np.full(values.size, self.other, np.int32)
        if self._sorted.size:  # one searchsorted finds every known value (np.unique costs ~20 µs even on 1 row)
            at = np.minimum(np.searchsorted(self._sorted, values), self._sorted.size - 1)
            hit = self._sorted[at] == values
            out[hit] = self._sorted_ids[at[hit]]
        else:
            hit = np.zeros(values.size, bool)
        if not hit.all():
            nan = np.isnan(values)
            out[nan] = self.missing
            if len(self.known) < self.top:  # still admitting: new values in the order the rows show them
                for i in np.flatnonzero(~hit & ~nan).tolist():
                    out[i] = self._id(float(values[i]))
        return out

    def one(self, rows: SliceRows) -> int:
        values = rows.column(self.feature)
        return self.missing if values is None else self._id(float(values[0]))

    def _id(self, value: float) -> int:
        if math.isnan(value):
            return self.missing
        found = self.known.get(value)
        if found is None:
            if len(self.known) >= self.top:
                return self.other
            found = self.known[value] = self.vocabulary.id(f"{self.name}={_number(value)}")
        return found


class EntityTop:
    """Entity ids labelled one by one once they are heavy hitters, at most `top` of them, for good (a label that
    came and went would leave a dead series behind). Counts are a count-min sketch (DEPTH x WIDTH counters, each id
    hashed to one counter per row, its count the smallest): memory is bounded however many ids arrive, counting a
    call is a few numpy calls over at most COUNTED of its distinct ids (its most frequent), and a count only ever
    overestimates, by about the rows seen / WIDTH. Verdicts assign many calls' rows at once (slice_rows.MergedRows), so
    COUNTED bounds the Python per flush, not per call. An id is promoted when its count reaches MIN_COUNT and 1/(2*top) of the rows seen so far (far above
    that error). Rows of an id seen before its promotion count under "other"."""

    MIN_COUNT = 5
    COUNTED = 256  # distinct ids counted per assignment at most: its most frequent (bounds the Python per flush)
    WIDTH = 4096
    MIX = np.uint64(0x9E3779B97F4A7C15)  # the second row's hash: the first, multiplied (Fibonacci hashing)

    def __init__(self, spec: Slice, vocabulary: Vocabulary) -> None:
        assert spec.entity is not None
        self.entity, self.name, self.top, self.vocabulary = spec.entity, spec.name, spec.top, vocabulary
        self.sketch = np.zeros((2, self.WIDTH), np.float64)
        self.labelled: dict[str, int] = {}
        self.seen = 0
        self.other = vocabulary.id(f"{spec.name}=other")
        self.none = vocabulary.id(f"{spec.name}=none")

    def assign(self, rows: SliceRows) -> np.ndarray:
        ids = rows.entity_ids(self.entity)
        n = rows.num_rows
        if ids is None:
            return np.full(n, self.none, np.int32)
        if isinstance(ids, str):
            return np.full(n, self._one(ids, n), np.int32)
        per_id = np.bincount(ids.codes, minlength=len(ids.values))
        get, none = self.labelled.get, self.none
        table = np.array([get(v, -1) if v else none for v in ids.values], np.int32)
        self.seen += int(per_id[table != none].sum())
        new = np.flatnonzero((table == -1) & (per_id > 0))
        if new.size and len(self.labelled) < self.top:
            if new.size > self.COUNTED:  # a heavy hitter is among the most frequent ids
                new = new[np.argsort(-per_id[new], kind="stable")[: self.COUNTED]]
            self._count([ids.values[i] for i in new.tolist()], per_id[new], table, new)
        table[table == -1] = self.other
        out: np.ndarray = table[ids.codes]
        return out

    def one(self, rows: SliceRows) -> int:
        ids = rows.entity_ids(self.entity)
        if ids is None:
            return self.none
        return self._one(ids if isinstance(ids, str) else ids.values[int(ids.codes[0])], 1)

    def _one(self, value: str, rows: int) -> int:
        if not value:
            return self.none
        self.seen += rows
        label = self.labelled.get(value)
        if label is not None:
            return label
        if len(self.labelled) >= self.top:
            return self.other
        # One id: the sketch's two counters in plain Python (the array path's numpy calls cost ~20 µs a call).
        first = hash(value) & 0xFFFFFFFFFFFFFFFF
        a = first % self.WIDTH
        b = ((first * int(self.MIX)) & 0xFFFFFFFFFFFFFFFF) >> 40
        b %= self.WIDTH
        sketch = self.sketch
        sketch[0, a] += rows
        sketch[1, b] += rows
        if min(sketch[0, a], sketch[1, b]) < max(self.MIN_COUNT, self.seen / (2 * self.top)):
            return self.other
        label = self.labelled[value] = self.vocabulary.id(f"{self.name}={value}")
        return label

    def _count(self, values: list[str], counts: np.ndarray, table: np.ndarray, where: np.ndarray) -> None:
        """Add the rows of these (unlabelled) ids to the sketch; promote those that are now heavy, writing their
        label into table[where[k]]."""
        first = np.array([hash(v) for v in values], np.int64).view(np.uint64)
        slots = np.stack([first % self.WIDTH, (first * self.MIX >> np.uint64(40)) % self.WIDTH]).astype(np.intp)
        for depth in (0, 1):
            np.add.at(self.sketch[depth], slots[depth], counts)
        estimate = np.minimum(self.sketch[0][slots[0]], self.sketch[1][slots[1]])
        heavy = np.flatnonzero(estimate >= max(self.MIN_COUNT, self.seen / (2 * self.top)))
        for k in heavy[np.argsort(-estimate[heavy], kind="stable")].tolist():  # the heaviest first
            if len(self.labelled) >= self.top:
                break
            label = self.labelled[values[k]] = self.vocabulary.id(f"{self.name}={values[k]}")
            table[where[k]] = label


class Defaulted:
    """Whether the row's feature fell back to its default: "yes" or "no"."""

    def __init__(self, spec: Slice, vocabulary: Vocabulary) -> None:
        assert spec.defaulted is not None
        self.feature = spec.defaulted
        self.no, self.yes = vocabulary.id(f"{spec.name}=no"), vocabulary.id(f"{spec.name}=yes")

    def assign(self, rows: SliceRows) -> np.ndarray:
        out = np.full(rows.num_rows, self.no, np.int32)
        used = rows.defaulted.get(self.feature)
        if used is not None:
            out[used] = self.yes
        return out

    def one(self, rows: SliceRows) -> int:
        used = rows.defaulted.get(self.feature)
        return self.yes if used is not None and len(used) else self.no


Dimension = Binned | Valued | EntityTop | Defaulted


def dimension(spec: Slice, vocabulary: Vocabulary) -> Dimension:
    if spec.entity is not None:
        return EntityTop(spec, vocabulary)
    if spec.defaulted is not None:
        return Defaulted(spec, vocabulary)
    return Binned(spec, vocabulary) if spec.edges is not None else Valued(spec, vocabulary)


class Slicer:
    """One predictor's slices. `dimensions` keeps each slice's state (an entity's counts and labels) across config
    changes that keep the slice as it was: a promote must not relabel the stores."""

    def __init__(self) -> None:
        self.vocabulary = Vocabulary()
        self.dimensions: dict[Slice, Dimension] = {}
        self.active: list[Dimension] = []

    def configure(self, slices: list[Slice]) -> None:
        self.active = [self.dimensions.get(s) or self.dimensions.setdefault(s, dimension(s, self.vocabulary))
                       for s in slices]  # fmt: skip

    def assign(self, rows: SliceRows) -> np.ndarray:
        """[1 + slices, rows] label ids; row 0 is "all"."""
        if rows.num_rows == 1:
            return np.array([[0], *([dim.one(rows)] for dim in self.active)], np.int32)
        out = np.zeros((1 + len(self.active), rows.num_rows), np.int32)
        for i, dim in enumerate(self.active, start=1):
            out[i] = dim.assign(rows)
        return out


def label_order(label: str) -> tuple[Any, ...]:
    """A sort key for slice labels: "all" first, then by slice name; bins and numbers in numeric order, other ids
    by text, then other/none/missing (reports list slices this way)."""
    if label == "all":
        return (0,)
    name, _, value = label.partition("=")
    return (1, name, *_value_order(value))


def _value_order(value: str) -> tuple[int, float, str]:
    for prefix, rank in ((">=", 2), ("<", 0)):
        if value.startswith(prefix) and _is_number(value.removeprefix(prefix)):
            return (rank, float(value.removeprefix(prefix)), "")
    if _is_number(value):
        return (1, float(value), "")
    low = value.split("-", 1)[0]
    if "-" in value[1:] and _is_number(low):
        return (1, float(low), value)
    return (4 if value in ("other", "none", "missing") else 3, 0.0, value)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
