"""A served call's rows as the verdicts hold them until a flush labels them (serving.verdicts): a `Snapshot` of
what a predictor's slices read, taken on the records thread, and `MergedRows`, every queued snapshot as one
SliceRows for one assignment per slice (serving.slices)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sibyl.serving.decode import CodedIds
from sibyl.serving.slices import Defaulted, Dimension, EntityTop, SliceRows


class ServedRows(SliceRows, Protocol):
    """A served call's rows (serving.followup): a 1-row call's snapshot reads scalars, without numpy."""

    def first_value(self, feature: str) -> float:
        """The first row's value of the feature (NaN: no model took it)."""
        ...

    def first_id(self, entity: str) -> str:
        """The first row's id ("": none)."""
        ...

    def row_ids(self, entity: str) -> str | CodedIds | list[str] | None:
        """entity_ids, but per-row ids not coded yet as the plain list of them: MergedRows codes every queued
        call's at once."""
        ...


class Snapshot:
    """What a predictor's slices read of one call's rows, taken when the call is queued for labelling (holding the
    whole call until the flush kept its objects alive into the collector's older generations and made collections
    far slower: docs/performance.md#verdicts). A 1-row call keeps Python scalars: a float (NaN: none), an id
    ("": none), and, for defaulted, a row index 0 when it used the default. Per-row ids stay a plain list until the
    flush codes them (ServedRows.row_ids)."""

    __slots__ = ("columns", "defaulted", "ids", "num_rows")

    def __init__(self, rows: ServedRows, dimensions: list[Dimension]) -> None:
        n = self.num_rows = rows.num_rows
        self.columns: dict[str, np.ndarray | float | None] = {}
        self.ids: dict[str, str | CodedIds | list[str] | None] = {}
        self.defaulted: dict[str, np.ndarray | int] = {}
        for dim in dimensions:
            if isinstance(dim, EntityTop):
                self.ids[dim.entity] = rows.first_id(dim.entity) if n == 1 else rows.row_ids(dim.entity)
            elif isinstance(dim, Defaulted):
                used = rows.defaulted.get(dim.feature)
                if used is not None and len(used):
                    self.defaulted[dim.feature] = 0 if n == 1 else used
            else:
                self.columns[dim.feature] = rows.first_value(dim.feature) if n == 1 else rows.column(dim.feature)


class MergedRows:
    """Many calls' rows as one (SliceRows): verdicts label every pending call in one assignment per flush, so the
    numpy calls of a slice are paid once a flush, not once a call (docs/performance.md#verdicts). A 1-row call's
    values are Python scalars (Snapshot), gathered into one array for every run of them."""

    def __init__(self, parts: list[Snapshot]) -> None:
        self.parts = parts
        self.sizes = [p.num_rows for p in parts]
        self.num_rows = sum(self.sizes)
        self.offsets: list[int] = np.cumsum([0, *self.sizes]).tolist()
        self.defaulted: dict[str, np.ndarray] = {}
        for feature in {f for p in parts for f in p.defaulted}:
            rows = [np.asarray(p.defaulted[feature], np.intp) + offset if p.num_rows > 1 else np.array([offset])
                    for p, offset in zip(parts, self.offsets, strict=False) if p.defaulted.get(feature) is not None]  # fmt: skip
            self.defaulted[feature] = np.concatenate(rows)

    def column(self, feature: str) -> np.ndarray | None:
        pieces: list[np.ndarray] = []
        scalars: list[float] = []
        for part in self.parts:
            value = part.columns.get(feature)
            if isinstance(value, float):
                scalars.append(value)
                continue
            if scalars:
                pieces.append(np.array(scalars, np.float32))
                scalars = []
            pieces.append(np.full(part.num_rows, np.nan, np.float32) if value is None else value)
        if scalars:
            pieces.append(np.array(scalars, np.float32))
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def entity_ids(self, entity: str) -> str | CodedIds | None:
        index: dict[str, int] = {}  # distinct ids of all the calls, in the order the rows show them; "" = none
        pieces: list[np.ndarray] = []
        run: list[str] = []  # one id per row of consecutive calls whose ids are not coded (a list per call)
        codes: list[int] = []  # one id for all the rows of a call (a 1-row call, a shared id, none): code, rows
        sizes: list[int] = []
        for part in self.parts:
            ids = part.ids.get(entity)
            if isinstance(ids, list):
                if codes:
                    pieces.append(np.repeat(np.array(codes, np.intp), sizes))
                    codes, sizes = [], []
                run += ids
                continue
            if run:
                pieces.append(_coded(run, index))
                run = []
            if isinstance(ids, CodedIds):
                if codes:
                    pieces.append(np.repeat(np.array(codes, np.intp), sizes))
                    codes, sizes = [], []
                remap = np.array([index.setdefault(v, len(index)) for v in ids.values], np.intp)
                pieces.append(remap[ids.codes])
            else:
                codes.append(index.setdefault(ids or "", len(index)))
                sizes.append(part.num_rows)
        if run:
            pieces.append(_coded(run, index))
        if codes:
            pieces.append(np.repeat(np.array(codes, np.intp), sizes))
        return CodedIds(list(index), np.concatenate(pieces) if len(pieces) > 1 else pieces[0])


def _coded(ids: list[str], index: dict[str, int]) -> np.ndarray:
    """Each id's code in `index`, adding the new ones in the order the rows show them: one Python step per distinct
    id, the rows coded by C loops (dict.fromkeys, map), not one step per row of every call."""
    for value in dict.fromkeys(ids):
        index.setdefault(value, len(index))
    return np.fromiter(map(index.__getitem__, ids), np.intp, len(ids))
