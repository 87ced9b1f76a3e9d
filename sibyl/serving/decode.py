"""Decode a PredictRequest's rows into one float32 matrix, checking shapes, names and limits.

Two input forms: dense (names once + packed float32, decoded with np.frombuffer: no per-value Python work)
and map rows (one protobuf map per row: convenient, but a Python loop over every value). Inside sibyl a
NaN means "not given": the feature is then filled from the feature store or its default. +-inf is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.v1.predict_pb2 import PredictRequest


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    max_models: int = 16
    max_name_length: int = 256


@dataclass(frozen=True)
class CodedIds:
    """Per-row entity ids as their distinct values and one code per row, so a lookup is per entity, not per row."""

    values: list[str]  # distinct ids; "" = this row has none
    codes: np.ndarray  # intp [num_rows]: values[codes[r]] is row r's id

    @classmethod
    def of(cls, ids: Sequence[str]) -> CodedIds:
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
    coded_entities: dict[str, CodedIds] = field(default_factory=dict)  # the same, already coded (batch tables)

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.names)}
        self._ids: dict[str, str | CodedIds | None] = {}

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


def _check_name(kind: str, name: str, limits: Limits) -> None:
    if not name or len(name) > limits.max_name_length:
        raise InvalidArgument(f"{kind} name must be 1-{limits.max_name_length} characters, got {len(name)}")


def decode(request: PredictRequest, limits: Limits) -> RowBatch:
    if not request.predictor:
        raise InvalidArgument("predictor is required")
    _check_name("predictor", request.predictor, limits)
    if len(request.extra_models) + 1 > limits.max_models:
        raise InvalidArgument(f"{len(request.extra_models) + 1} models asked for; at most {limits.max_models} per call")
    for key, value in request.context.items():
        _check_name("context entity", key, limits)
        if len(value) > limits.max_name_length:
            raise InvalidArgument(f"context {key} id is longer than {limits.max_name_length} characters")
    has_dense = request.HasField("dense")
    if has_dense and len(request.rows):
        raise InvalidArgument("give rows either as dense or as rows, not both")
    batch = _decode_dense(request, limits) if has_dense else _decode_rows(request, limits)
    if batch.num_rows == 0:
        raise InvalidArgument("request has no rows: set rows (one per prediction) or dense.num_rows")
    if np.isinf(batch.values).any():
        row, col = np.argwhere(np.isinf(batch.values))[0]
        raise InvalidArgument(f"feature {batch.names[col]!r} in row {row} is infinite; send a finite value or NaN")
    return batch


def _check_rows(num_rows: int, limits: Limits) -> None:
    if num_rows > limits.max_rows:
        raise InvalidArgument(f"{num_rows} rows in one call; at most {limits.max_rows} (split the request)")


def _decode_dense(request: PredictRequest, limits: Limits) -> RowBatch:
    dense = request.dense
    n, names = dense.num_rows, list(dense.feature_names)
    _check_rows(n, limits)
    for name in names:
        _check_name("feature", name, limits)
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise InvalidArgument(f"dense.feature_names lists {dup!r} twice")
    expected = n * len(names) * 4
    if len(dense.values) != expected:
        raise InvalidArgument(
            f"dense.values has {len(dense.values)} bytes; {n} rows x {len(names)} features x 4 (float32) = {expected}"
        )
    values = np.frombuffer(dense.values, dtype="<f4").reshape(n, len(names)) if names else np.empty((n, 0), np.float32)
    row_entities: dict[str, list[str]] = {}
    for column in request.row_entities:
        _check_name("row entity", column.entity, limits)
        if len(column.ids) != n:
            raise InvalidArgument(f"row_entities {column.entity!r} has {len(column.ids)} ids for {n} rows")
        row_entities[column.entity] = list(column.ids)
    return RowBatch(n, names, values, dict(request.context), row_entities)


def _decode_rows(request: PredictRequest, limits: Limits) -> RowBatch:
    rows = request.rows
    n = len(rows)
    _check_rows(n, limits)
    if request.row_entities:
        raise InvalidArgument("row_entities goes with dense; with rows, set each row's entities")
    index: dict[str, int] = {}
    cells: list[tuple[int, int, float]] = []
    row_entities: dict[str, list[str]] = {}
    for r, row in enumerate(rows):
        for name, value in row.features.items():
            col = index.get(name)
            if col is None:
                _check_name("feature", name, limits)
                col = index[name] = len(index)
            cells.append((r, col, value))
        for name, vector in row.vectors.items():
            for i, value in enumerate(vector.values):
                column = f"{name}[{i}]"
                col = index.get(column)
                if col is None:
                    _check_name("feature", name, limits)
                    col = index[column] = len(index)
                cells.append((r, col, value))
        for entity, entity_id in row.entities.items():
            ids = row_entities.get(entity)
            if ids is None:
                _check_name("row entity", entity, limits)
                ids = row_entities[entity] = [""] * n
            ids[r] = entity_id
    values = np.full((n, len(index)), np.nan, dtype=np.float32)
    if cells:
        r_idx, c_idx, vals = zip(*cells, strict=True)
        values[r_idx, c_idx] = vals
    return RowBatch(n, list(index), values, dict(request.context), row_entities)
