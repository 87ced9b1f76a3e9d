"""Rows for the bulk loader from CSV, Parquet or JSONL, each with the line (or row) number it came from.

CSV: a header, one entity-id column, then one column per feature. A cell is a number ("1.5"), a vector of
numbers separated by ';' ("0.1;0.2;0.3"), or empty (feature not written for that entity).
Parquet: the same columns; list columns are vectors, nulls are skipped; "row N" counts data rows from 1.
JSONL: the memory backend's format, {"entity": ..., "id": ..., "features": {...}} per line.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sibyl.errors import InvalidArgument, MissingDependency
from sibyl.features.memory import read_jsonl
from sibyl.features.redis import Row

Numbered = tuple[str, Row]  # ("line 7" / "row 7", row)
FORMATS = ("csv", "parquet", "jsonl")


class BadInput(ValueError):
    """A row cannot be loaded; `where` is "line N" or "row N"."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def guess_format(path: str) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    aliases = {"pq": "parquet", "json": "jsonl", "ndjson": "jsonl", "tsv": "csv"}
    fmt = aliases.get(suffix, suffix)
    if fmt not in FORMATS:
        raise InvalidArgument(f"cannot tell the format of {path}: name it .csv/.parquet/.jsonl or pass --format")
    return fmt


def parse_cell(text: str) -> float | list[float] | None:
    text = text.strip()
    if not text:
        return None
    try:
        if ";" in text:
            return [float(part) for part in text.split(";")]
        return float(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a number or ';'-separated numbers") from None


def _columns(header: list[str], entity_column: str | None, where: str) -> tuple[int, list[tuple[int, str]]]:
    if len(header) < 2:
        raise BadInput(where, f"need an entity id column and at least one feature column, found {header}")
    name = entity_column or header[0]
    if name not in header:
        raise BadInput(where, f"no column {name!r} (columns: {', '.join(header[:10])})")
    if len(set(header)) != len(header):
        raise BadInput(where, "duplicate column names in the header")
    at = header.index(name)
    return at, [(i, h) for i, h in enumerate(header) if i != at]


def _values(where: str, cells: Iterable[tuple[str, Any]], parse: Callable[[Any], Any]) -> dict[str, Any]:
    """{feature: value} of one row's (feature, cell) pairs; an empty cell (None) is no value, a bad one BadInput."""
    values: dict[str, Any] = {}
    for name, cell in cells:
        try:
            value = parse(cell)
        except ValueError as exc:
            raise BadInput(where, f"column {name!r}: {exc}") from None
        if value is not None:
            values[name] = value
    return values


def read_csv(path: str, entity: str | None, entity_column: str | None) -> Iterator[Numbered]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise BadInput("line 1", "the file is empty (expected a header)")
        at, features = _columns([h.strip() for h in header], entity_column, "line 1")
        kind = entity or header[at].strip()
        last = reader.line_num
        for record in reader:
            where, last = f"line {last + 1}", reader.line_num  # first physical line of this record
            if not record or all(not c.strip() for c in record):
                continue
            if len(record) != len(header):
                raise BadInput(where, f"{len(record)} fields, the header has {len(header)}")
            entity_id = record[at].strip()
            if not entity_id:
                raise BadInput(where, f"empty entity id in column {header[at]!r}")
            yield where, (kind, entity_id, _values(where, ((name, record[i]) for i, name in features), parse_cell))


def _parquet_value(value: Any) -> float | list[float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_cell(value)
    if isinstance(value, list):
        if any(v is None or isinstance(v, bool | str) for v in value):
            raise ValueError("a list holds nulls or non-numbers")
        return [float(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def read_parquet(path: str, entity: str | None, entity_column: str | None) -> Iterator[Numbered]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency("pyarrow", "parquet", "loading Parquet files") from None
    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise BadInput("row 0", f"not a readable Parquet file: {exc}") from None
    header = file.schema_arrow.names
    at, features = _columns(header, entity_column, "schema")
    kind = entity or header[at]
    number = 0
    for batch in file.iter_batches(batch_size=4096):
        columns = batch.to_pydict()
        ids, cols = columns[header[at]], [(name, columns[name]) for _, name in features]
        for r in range(batch.num_rows):
            number += 1
            where = f"row {number}"
            if ids[r] is None or str(ids[r]) == "":
                raise BadInput(where, f"empty entity id in column {header[at]!r}")
            yield where, (kind, str(ids[r]), _values(where, ((name, col[r]) for name, col in cols), _parquet_value))


def read_jsonl_rows(path: str) -> Iterator[Numbered]:
    try:
        for number, row in read_jsonl(path):
            yield f"line {number}", row
    except ValueError as exc:  # read_jsonl says "<path> line N: ..."
        text = str(exc).removeprefix(f"{path} ")
        raise BadInput(text.split(":", 1)[0], text.split(":", 1)[1].strip()) from None


def read_rows(
    path: str, fmt: str | None = None, entity: str | None = None, entity_column: str | None = None
) -> Iterator[Numbered]:
    fmt = fmt or guess_format(path)
    if fmt == "csv":
        return read_csv(path, entity, entity_column)
    if fmt == "parquet":
        return read_parquet(path, entity, entity_column)
    return read_jsonl_rows(path)
