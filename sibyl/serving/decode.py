"""Decode a PredictRequest's rows into one float32 matrix, checking shapes, names and the work budget.

Two input forms: dense (names once + packed float32, decoded with np.frombuffer: no per-value Python work)
and map rows (one protobuf map per row). A map row costs one Python step per scalar feature; its vectors go
through numpy (np.asarray on the repeated field) and a vector's column names ("emb[0]".."emb[k-1]") are made
once per request, not per row. Rows that all repeat row 0's layout (the same features, vectors of the same
widths and entities, in row 0's order: what clients send) are the matrix already, row after row, and skip the
per-row column lookups and the scatter; any other mix takes the general path. Every count is checked against
serving.limits before anything proportional to it is allocated, so the work is linear in the message's bytes.
Inside sibyl a NaN means "not given": the feature is then filled from the feature store or its default. +-inf
is refused.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.serving.limits import Limits, first_duplicate
from sibyl.v1.predict_pb2 import EntityColumn, PredictRequest

__all__ = ["CodedIds", "Limits", "RowBatch", "decode", "from_arrays"]


_ONE_CODE = np.zeros(1, np.intp)
_ONE_CODE.flags.writeable = False  # shared by every 1-row CodedIds


@dataclass(frozen=True)
class CodedIds:
    """Per-row entity ids as their distinct values and one code per row, so a lookup is per entity, not per row."""

    values: list[str]  # distinct ids; "" = this row has none
    codes: np.ndarray  # intp [num_rows]: values[codes[r]] is row r's id

    @classmethod
    def of(cls, ids: Sequence[str]) -> CodedIds:
        if len(ids) == 1:  # a 1-row call: no coding pass
            return cls([ids[0]], _ONE_CODE)
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(i, len(index)) for i in ids), np.intp, len(ids))
        return cls(list(index), codes)

    def rows(self) -> list[str]:
        """One id per row again (for logs and tests; the request path works on the codes)."""
        values = self.values
        return [values[c] for c in self.codes.tolist()]


@dataclass
class RowBatch:
    num_rows: int
    names: list[str]  # request columns
    values: np.ndarray  # float32 [num_rows, len(names)]; NaN = not given
    shared_entities: dict[str, str]  # entity -> id for every row (request context)
    row_entities: dict[str, list[str]] = field(default_factory=dict)  # entity -> id per row ("" = none)
    coded_entities: Mapping[str, CodedIds] = field(default_factory=dict)  # the same, already coded (batch tables)

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.names)}
        self._ids: dict[str, str | CodedIds | None] = {}

    def first_id(self, entity: str) -> str:
        """The first row's id ("" = none), without coding the ids (a 1-row call's slice reads only this)."""
        coded = self.coded_entities.get(entity)
        if coded is not None:
            own = coded.values[int(coded.codes[0])]
        else:
            ids = self.row_entities.get(entity)
            own = ids[0] if ids else ""
        return own or self.shared_entities.get(entity, "")

    def entity_ids(self, entity: str) -> str | CodedIds | None:
        """One id for all rows, per-row ids (coded; a row without one takes the shared id, else ""), or None."""
        if entity not in self._ids:
            coded = self.coded_entities.get(entity)
            if coded is None and entity in self.row_entities:
                coded = CodedIds.of(self.row_entities[entity])
            shared = self.shared_entities.get(entity)
            if coded is not None and shared:
                coded = CodedIds([i or shared for i in coded.values], coded.codes)
            self._ids[entity] = shared if coded is None else coded
        return self._ids[entity]


def decode(request: PredictRequest, limits: Limits) -> RowBatch:
    check_header(request, limits)
    has_dense = request.HasField("dense")
    if has_dense and len(request.rows):
        raise InvalidArgument("give rows either as dense or as rows, not both")
    batch = _decode_dense(request, limits) if has_dense else _decode_rows(request, limits)
    return _reject_empty_or_infinite(batch)


def from_arrays(
    request: PredictRequest, names: list[str], values: np.ndarray, row_entities: dict[str, list[str]], limits: Limits
) -> RowBatch:
    """Rows a protocol adapter already turned into one float32 matrix (KServe V2 tensors, checked against the
    budget there): the request's other fields and the rows get decode()'s checks, without a bytes round trip."""
    check_header(request, limits)
    for entity, ids in row_entities.items():
        _check_ids(f"entity ids {entity!r}", ids, limits)
    dup = first_duplicate(names)
    if dup is not None:
        raise InvalidArgument(f"feature {dup!r} is given twice; send each feature once")
    return _reject_empty_or_infinite(RowBatch(values.shape[0], names, values, dict(request.context), row_entities))


def _check_ids(what: str, ids: list[str], limits: Limits) -> list[str]:
    if ids and max(map(len, ids)) > limits.max_name_length:
        raise InvalidArgument(f"{what}: an id is longer than {limits.max_name_length} characters")
    return ids


def _reject_empty_or_infinite(batch: RowBatch) -> RowBatch:
    if batch.num_rows == 0:
        raise InvalidArgument("request has no rows: set rows (one per prediction) or dense.num_rows")
    if batch.values.size and np.isinf(batch.values).any():  # ids only (a Feast-style call): nothing to scan
        row, col = np.argwhere(np.isinf(batch.values))[0]
        raise InvalidArgument(f"feature {batch.names[col]!r} in row {row} is infinite; send a finite value or NaN")
    return batch


def check_header(request: PredictRequest, limits: Limits) -> None:
    """Everything but the rows: predictor, request id, models asked for, context entities."""
    if not request.predictor:
        raise InvalidArgument("predictor is required")
    limits.name("predictor", request.predictor)
    limits.text("request_id", request.request_id)
    if len(request.extra_models) + 1 > limits.max_models:
        raise InvalidArgument(
            f"{len(request.extra_models) + 1} models asked for; at most {limits.max_models} per call (server.max_models)"
        )
    limits.columns(len(request.context), "context entities")
    for key, value in request.context.items():
        limits.name("context entity", key)
        limits.text(f"context {key} id", value)


def _decode_dense(request: PredictRequest, limits: Limits) -> RowBatch:
    dense = request.dense
    n = limits.rows(dense.num_rows)
    width = limits.columns(len(dense.feature_names))
    limits.elements(n, width)
    if not width and not request.row_entities and n:
        raise InvalidArgument(
            f"dense has {n} rows but no feature_names and no row_entities: send at least one column, or use rows"
        )
    expected = n * width * 4
    data = dense.values  # each read of a bytes field is a copy: one here
    if len(data) != expected:
        raise InvalidArgument(
            f"dense.values has {len(data)} bytes; {n} rows x {width} features x 4 (float32) = {expected}"
        )
    names = list(dense.feature_names)
    for name in names:
        limits.name("feature", name)
    dup = first_duplicate(names)
    if dup is not None:
        raise InvalidArgument(f"dense.feature_names lists {dup!r} twice")
    values = np.frombuffer(data, dtype="<f4").reshape(n, width) if width else np.empty((n, 0), np.float32)
    row_entities = _entity_columns(request.row_entities, n, width, limits)
    return RowBatch(n, names, values, dict(request.context), row_entities)


def _entity_columns(columns: Iterable[EntityColumn], n: int, width: int, limits: Limits) -> dict[str, list[str]]:
    """Entity ids per row; they count as columns of the budget beside the `width` feature columns."""
    columns = list(columns)
    limits.columns(len(columns), "row_entities columns")
    limits.elements(n, width + len(columns), "values and entity ids")
    out: dict[str, list[str]] = {}
    for column in columns:
        limits.name("row entity", column.entity)
        if column.entity in out:
            raise InvalidArgument(f"row_entities lists {column.entity!r} twice")
        if len(column.ids) != n:
            raise InvalidArgument(f"row_entities {column.entity!r} has {len(column.ids)} ids for {n} rows")
        out[column.entity] = _check_ids(f"row_entities {column.entity!r}", list(column.ids), limits)
    return out


class _Columns:
    """Column name -> matrix column for map rows; a vector's columns made once per width, within max_columns."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.index: dict[str, int] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def add(self, name: str) -> int:
        self.limits.name("feature", name)
        col = len(self.index)
        self.limits.columns(col + 1)
        self.index[name] = col
        return col

    def first(self, names: list[str]) -> None:
        """A first row's scalar names (a map's keys: distinct) as columns 0..k-1, checked in bulk."""
        if (
            self.index
            or not names
            or not 0 < min(map(len, names)) <= max(map(len, names)) <= self.limits.max_name_length
        ):
            for name in names:
                self.add(name)  # raises naming the limit
            return
        self.limits.columns(len(names))
        self.index.update(zip(names, range(len(names)), strict=True))

    def vector(self, name: str, width: int) -> np.ndarray:
        known = self._vectors.get(name)
        if known is not None and len(known) >= width:
            return known[:width]
        self.limits.name("feature", name)
        self.limits.columns(width, f"columns in vector {name!r}")  # before a name per column is made
        ids = np.empty(width, np.intp)
        start = 0
        if known is not None:
            start = len(known)
            ids[:start] = known
        for j in range(start, width):
            column = f"{name}[{j}]"
            col = self.index.get(column)
            ids[j] = self.add(column) if col is None else col
        self._vectors[name] = ids
        return ids


def _decode_rows(request: PredictRequest, limits: Limits) -> RowBatch:
    rows = request.rows
    n = limits.rows(len(rows))
    if request.row_entities:
        raise InvalidArgument("row_entities goes with dense; with rows, set each row's entities")
    return (n and _alike_rows(request, n, limits)) or _any_rows(request, n, limits)


def _alike_rows(request: PredictRequest, n: int, limits: Limits) -> RowBatch | None:
    """Rows that all give row 0's features, vectors (of the same widths) and entities, in row 0's order (upb
    iterates equal maps alike): what clients send. Their values, row after row, are the matrix: no per-row
    column lookups, no scatter. None when a row differs or anything needs the general path's per-row
    checks; _any_rows then decodes the request (so a request costs at most twice this pass)."""
    rows = request.rows
    row0 = rows[0]
    names, vectors, entities = list(row0.features), list(row0.vectors), list(row0.entities)
    widths = [len(row0.vectors[name].values) for name in vectors]
    width = len(names) + sum(widths)
    if 0 in widths or n * (width + len(entities)) > limits.max_elements or len(entities) > limits.max_columns:
        return None  # an empty vector gives no columns; over the budget: the general path says where
    columns = _Columns(limits)
    columns.first(names)
    for name, w in zip(vectors, widths, strict=True):
        columns.vector(name, w)
    if len(columns.index) != width:
        return None  # a vector column also given as a scalar: the general path lets the vector win
    for entity in entities:
        limits.name("row entity", entity)
    vals = array("f")
    ids: list[list[str]] = [[] for _ in entities]
    for row in rows:
        features = row.features
        if list(features) != names:
            return None
        vals.extend(map(features.__getitem__, names))  # in C; the map's values views are Python loops
        row_vectors = row.vectors
        if vectors or row_vectors:
            if list(row_vectors) != vectors:
                return None
            for name, w in zip(vectors, widths, strict=True):
                values = row_vectors[name].values
                if len(values) != w:
                    return None
                vals.extend(values)  # in C
        row_entities = row.entities
        if entities or row_entities:
            if list(row_entities) != entities:
                return None
            for entity, column in zip(entities, ids, strict=True):
                column.append(row_entities[entity])
    if any(column and max(map(len, column)) > limits.max_name_length for column in ids):
        return None  # the general path names the row
    matrix = np.frombuffer(vals, np.float32).reshape(n, width) if width else np.empty((n, 0), np.float32)
    return RowBatch(n, list(columns.index), matrix, dict(request.context), dict(zip(entities, ids, strict=True)))


def _any_rows(request: PredictRequest, n: int, limits: Limits) -> RowBatch:
    """Map rows with any mix of features, vectors and entities; a missing feature is NaN, a vector column
    given as a scalar too takes the vector's value."""
    rows = request.rows
    columns = _Columns(limits)
    index = columns.index
    find, add = index.get, columns.add
    per_row = np.zeros(n, np.intp)  # scalar features per row
    cols, vals = array("q"), array("f")  # their columns and values, row after row
    # By name and width: the vector's columns, the rows that give it, their values one row after another.
    vectors: dict[tuple[str, int], tuple[np.ndarray, list[int], array[float]]] = {}
    row_entities: dict[str, list[str]] = {}
    given = 0  # values on the wire so far: each is a matrix element, counted before the next row's work
    last: list[str] | None = None
    found: list[int] = []
    for r, row in enumerate(rows):
        features = row.features
        if features:
            names = list(features)
            if names != last:  # a row with the row before's names in its order takes its columns
                seen: list[int | None] = list(map(find, names))  # in C; a name not seen yet is None
                if None in seen:
                    found = [add(name) if col is None else col for col, name in zip(seen, names, strict=True)]
                else:
                    found = cast(list[int], seen)
                last = names
            cols.extend(found)
            vals.extend(map(features.__getitem__, names))  # in C; the map's values views are Python loops
            per_row[r] = len(found)
            given += len(found)
        row_vectors = row.vectors
        if row_vectors:
            for name in row_vectors:
                vector = row_vectors[name]
                width = len(vector.values)
                given += width
                if width and given <= limits.max_elements:
                    group = vectors.get((name, width))
                    if group is None:
                        group = vectors[name, width] = (columns.vector(name, width), [], array("f"))
                    group[1].append(r)
                    group[2].extend(vector.values)  # in C, unlike np.asarray per row (docs/performance.md#decode)
        if given > limits.max_elements:
            raise InvalidArgument(
                f"{given} feature values in the first {r + 1} rows; at most {limits.max_elements} per call "
                "(server.max_elements): split the request"
            )
        entities = row.entities
        if entities:
            for entity in entities:
                entity_id = entities[entity]
                ids = row_entities.get(entity)
                if ids is None:
                    limits.name("row entity", entity)
                    limits.columns(len(row_entities) + 1, "row entities")
                    limits.elements(n, len(index) + len(row_entities) + 1, "values and entity ids")
                    ids = row_entities[entity] = [""] * n
                if len(entity_id) > limits.max_name_length:
                    limits.text(f"row {r} {entity} id", entity_id)  # raises, naming the row
                ids[r] = entity_id
    limits.elements(n, len(index) + len(row_entities), "values and entity ids" if row_entities else "values")
    values = np.full((n, len(index)), np.nan, dtype=np.float32)
    if vals:
        values[np.repeat(np.arange(n), per_row), np.frombuffer(cols, np.int64)] = np.frombuffer(vals, np.float32)
    for vector_columns, vector_rows, vector_values in vectors.values():  # after the scalars: a vector wins
        block = np.frombuffer(vector_values, np.float32).reshape(len(vector_rows), len(vector_columns))
        values[np.asarray(vector_rows)[:, None], vector_columns] = block
    return RowBatch(n, list(index), values, dict(request.context), row_entities)
