"""Arrow tables in and out of the request path's RowBatch, column by column, with no per-row Python.

In: a column named like a feature carries it (a vector feature: one list column `emb`, or `emb[0]`..`emb[D-1]`);
null or NaN = not given (then the feature store, then the default, as on the server). A column named like an
entity of the models' features (e.g. `consumer_id`) carries the ids, dictionary-encoded by Arrow into
decode.CodedIds. Every other column passes through untouched.
Out: one score column per model, a prediction id and the defaulted features of each row.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from sibyl.errors import InvalidArgument, MissingDependency
from sibyl.models.manifest import FeatureSpec
from sibyl.serving.assembly import Layout
from sibyl.serving.decode import CodedIds, RowBatch

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def arrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise MissingDependency("pyarrow", "parquet", "batch scoring of tables") from None
    return pyarrow


def _floats(pa: Any, column: Any, name: str) -> np.ndarray:
    """A numeric column as numpy (float64 with NaN for nulls, or ints): the caller's float32 assignment casts it,
    rounding as numpy's astype does. Anything but numbers is the caller's mistake."""
    import pyarrow.compute as pc

    kind, t = column.type, pa.types
    if not (t.is_integer(kind) or t.is_floating(kind) or t.is_boolean(kind) or t.is_decimal(kind)):
        raise InvalidArgument(f"column {name!r} is {kind}; a feature column holds numbers (null = not given)")
    if t.is_boolean(kind) or t.is_decimal(kind):  # numpy would make objects of these
        column = pc.fill_null(pc.cast(column, pa.float64()), float("nan"))
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _vector(pa: Any, column: Any, spec: FeatureSpec) -> np.ndarray:
    """A list column of spec.dim numbers per row as float32 [N, dim]; a null list = not given."""
    if not (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)):
        raise InvalidArgument(
            f"column {spec.name!r} is {column.type}; the vector feature {spec.name} needs a list of {spec.dim} "
            f"numbers per row (or columns {spec.name}[0]..{spec.name}[{spec.dim - 1}])"
        )
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    n = len(column)
    out = np.full((n, spec.dim), np.nan, np.float32)
    present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)
    given = column.filter(pa.array(present)) if not present.all() else column
    if pa.types.is_list(given.type):
        lengths = np.diff(np.asarray(given.offsets.to_numpy(), np.int64))
        if len(lengths) and (lengths != spec.dim).any():
            row = int(np.flatnonzero(present)[np.flatnonzero(lengths != spec.dim)[0]])
            raise InvalidArgument(
                f"column {spec.name!r} row {row}: {int(lengths[lengths != spec.dim][0])} values, the feature has "
                f"dim {spec.dim}"
            )
    elif given.type.list_size != spec.dim:
        raise InvalidArgument(
            f"column {spec.name!r} holds lists of {given.type.list_size}; the feature has dim {spec.dim}"
        )
    out[present] = _floats(pa, given.flatten(), spec.name).reshape(-1, spec.dim)
    return out


def _ids(pa: Any, column: Any, entity: str) -> CodedIds:
    import pyarrow.compute as pc

    kind, t = column.type, pa.types
    if not (t.is_string(kind) or t.is_large_string(kind) or t.is_integer(kind) or t.is_dictionary(kind)):
        raise InvalidArgument(f"entity column {entity!r} is {kind}; ids are strings or integers")
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)  # integers hash as integers; only the distinct ones become text
    values = [str(v) for v in column.dictionary.to_pylist()]
    codes = column.indices
    if codes.null_count:
        codes = pc.fill_null(codes, len(values))
        values.append("")  # a row without an id: only the shared id (context) or the default serves it
    return CodedIds(values, np.asarray(codes.to_numpy(zero_copy_only=False), np.intp))


class _Ids(Mapping[str, CodedIds]):
    """The table's entity columns, each coded on first use: a chunk that needs no feature store codes none."""

    def __init__(self, pa: Any, table: Any, entities: list[str]) -> None:
        self.pa, self.table, self.entities = pa, table, entities
        self.coded: dict[str, CodedIds] = {}

    def __getitem__(self, entity: str) -> CodedIds:
        if entity not in self.entities:
            raise KeyError(entity)
        if entity not in self.coded:
            self.coded[entity] = _ids(self.pa, self.table.column(entity), entity)
        return self.coded[entity]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entities)

    def __len__(self) -> int:
        return len(self.entities)


def to_rows(table: Any, layout: Layout, context: Mapping[str, str], first_row: int = 0) -> RowBatch:
    """The table's feature and entity columns as one RowBatch (what decode makes of a request): one float32
    matrix in column order, each column written once, contiguously."""
    pa = arrow()
    present = set(table.column_names)
    names: list[str] = []
    sources: list[tuple[Any, FeatureSpec | None]] = []  # (column, the vector's spec) in matrix order
    for spec in layout.specs:
        if spec.dtype != "float" and spec.name in present:
            sources.append((table.column(spec.name), spec))
            names.extend(spec.columns)
            continue
        for column in spec.columns:
            if column in present:
                sources.append((table.column(column), None))
                names.append(column)
    n = table.num_rows
    values = np.empty((n, len(names)), np.float32, order="F")
    at = 0
    for column, vector in sources:
        if vector is None:
            values[:, at] = _floats(pa, column, names[at])
            at += 1
        else:
            values[:, at : at + vector.dim] = _vector(pa, column, vector)
            at += vector.dim
    if np.isinf(values).any():
        row, col = np.argwhere(np.isinf(values))[0]
        raise InvalidArgument(
            f"feature {names[col]!r} in row {first_row + row} is infinite; give a finite value or null"
        )
    entities = [g.entity for g in layout.entity_groups if g.entity in present]
    return RowBatch(n, names, values, dict(context), coded_entities=_Ids(pa, table, entities))


@functools.lru_cache(maxsize=8)
def _positions(n: int) -> np.ndarray:
    """Rows 0..n-1 as 8 hex digits each (ASCII, [n, 8]); chunks of one size share it."""
    rows = np.arange(n, dtype=np.uint32)
    out = np.empty((n, 8), np.uint8)
    for k in range(8):
        out[:, 7 - k] = _HEX[(rows >> np.uint32(4 * k)) & np.uint32(15)]
    out.flags.writeable = False
    return out


def prediction_ids(n: int) -> Any:
    """One id per row: 24 random hex digits per call, then the row's position in 8 hex digits (32 in all, like
    the server's): unique without a random draw per row."""
    pa = arrow()
    chars = np.empty((n, 32), np.uint8)
    chars[:, :24] = np.frombuffer(os.urandom(12).hex().encode(), np.uint8)
    chars[:, 24:] = _positions(n)
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))


def score_array(scores: np.ndarray) -> Any:
    """float32 [N, 1] -> a float column; [N, D] -> a list<float> column of D per row."""
    pa = arrow()
    if scores.shape[1] == 1:
        return pa.array(scores[:, 0], pa.float32())
    n, dim = scores.shape
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(scores.ravel(), pa.float32()))


def defaulted_array(specs: Sequence[FeatureSpec], missing: np.ndarray) -> Any:
    """Per row, the names of the features that took their default (list<string>), in manifest order."""
    pa = arrow()
    if not missing.any():  # every feature given or found: one empty list per row
        return pa.ListArray.from_arrays(pa.array(np.zeros(missing.shape[0] + 1, np.int32)), pa.array([], pa.string()))
    names = list(dict.fromkeys(s.name for s in specs))
    where = {name: i for i, name in enumerate(names)}
    by_name = np.zeros((missing.shape[0], len(names)), bool)
    for j, spec in enumerate(specs):
        by_name[:, where[spec.name]] |= missing[:, j]  # one name served to several entities counts once
    _, cols = np.nonzero(by_name)
    offsets = np.zeros(missing.shape[0] + 1, np.int32)
    np.cumsum(by_name.sum(axis=1), out=offsets[1:])
    values = pa.array(names, pa.string()).take(pa.array(cols.astype(np.int32)))
    return pa.ListArray.from_arrays(pa.array(offsets), values)
