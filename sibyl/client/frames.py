"""Rows in (numpy, pandas, column mappings, row dicts) -> one dense PredictRequest; PredictResponse -> numpy/pandas.

Every input is sent in the dense form (feature names once, float32 values packed row-major: the server decodes
it with np.frombuffer). NaN, None and pandas' NA mean "not given": the server fills such a feature from the
feature store, or its default. Columns that are not numbers (strings, objects, categories) are entity ids per
row (e.g. store_id), unless `entity_columns` names them explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, TypeGuard, Union

import numpy as np

from sibyl.errors import InvalidArgument, MissingDependency
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest, PredictResponse, Role

if TYPE_CHECKING:
    import pandas as pd

Rows = Union["pd.DataFrame", np.ndarray, Mapping[str, Any], Sequence[Mapping[str, Any]]]


class RequestOptions(TypedDict, total=False):
    """build_request's keyword arguments (defaults there), which Client.predict and AsyncClient.predict pass on."""

    feature_names: Sequence[str] | None
    entity_columns: Sequence[str] | None
    entities: Mapping[str, Sequence[Any]] | None
    context: Mapping[str, Any] | None
    extra_models: Iterable[str]
    model_override: str
    request_id: str


def build_request(
    predictor: str,
    rows: Rows,
    *,
    feature_names: Sequence[str] | None = None,
    entity_columns: Sequence[str] | None = None,
    entities: Mapping[str, Sequence[Any]] | None = None,
    context: Mapping[str, Any] | None = None,
    extra_models: Iterable[str] = (),
    model_override: str = "",
    request_id: str = "",
) -> PredictRequest:
    """rows: a DataFrame, a 2-D array (with feature_names), a mapping of column -> values, or a list of row dicts.
    entities: more per-row entity id columns; context: entity ids shared by every row (e.g. consumer_id)."""
    names, matrix, ids = _columns(rows, feature_names, entity_columns)
    n = matrix.shape[0]
    for entity, values in (entities or {}).items():
        ids[entity] = _ids(entity, values, n)
    return PredictRequest(
        request_id=request_id,
        predictor=predictor,
        context={k: str(v) for k, v in (context or {}).items()},
        dense=DenseRows(feature_names=names, values=np.ascontiguousarray(matrix, "<f4").tobytes(), num_rows=n),
        row_entities=[EntityColumn(entity=e, ids=v) for e, v in ids.items()],
        extra_models=list(extra_models),
        model_override=model_override,
    )


def _columns(
    rows: Rows, feature_names: Sequence[str] | None, entity_columns: Sequence[str] | None
) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    if isinstance(rows, np.ndarray):
        if feature_names is None:
            raise InvalidArgument("a numpy array of rows needs feature_names (one per column)")
        matrix = rows.reshape(1, -1) if rows.ndim == 1 else rows
        if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
            raise InvalidArgument(f"rows of shape {rows.shape} for {len(feature_names)} feature_names; want [N, names]")
        return list(feature_names), _floats("rows", matrix), {}
    if _is_frame(rows):
        columns: Mapping[str, Any] = {str(c): rows[c] for c in rows.columns}
    elif isinstance(rows, Mapping):
        columns = {str(k): v for k, v in rows.items()}
    elif isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
        columns = _from_records(rows)
    else:
        raise InvalidArgument(
            f"rows of type {type(rows).__name__}: give a DataFrame, array, column mapping or row dicts"
        )
    if feature_names is not None:
        raise InvalidArgument("feature_names is for numpy rows; a table's column names are its feature names")
    explicit = set(entity_columns or ())
    if missing := explicit - set(columns):
        raise InvalidArgument(f"entity_columns {sorted(missing)} are not columns of rows: {list(columns)}")
    names, blocks, ids = [], [], {}
    n = None
    for name, values in columns.items():
        array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values, dtype=object)
        if n is None:
            n = len(array)
        elif len(array) != n:
            raise InvalidArgument(f"column {name!r} has {len(array)} values, earlier columns {n}")
        if name in explicit or not _numeric(array):
            ids[name] = _ids(name, array, n)
        else:
            names.append(name)
            blocks.append(_floats(name, array))
    matrix = np.column_stack(blocks) if blocks else np.empty((n or 0, 0), np.float32)
    return names, matrix, ids


def _is_frame(rows: Any) -> TypeGuard[pd.DataFrame]:
    """A pandas DataFrame (or one shaped like it), known by name: pandas is optional and not imported here."""
    return type(rows).__name__ == "DataFrame" and hasattr(rows, "columns")


def _from_records(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    names: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InvalidArgument(f"rows[{i}] is a {type(record).__name__}; a list of rows holds dicts")
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in records] for name in names}


def _numeric(array: np.ndarray) -> bool:
    if array.dtype.kind in "biuf":
        return True
    if array.dtype.kind != "O":
        return False  # strings, datetimes, ...: not features
    # Objects (lists of Python values, pandas' nullable types): numbers and missing values only.
    return all(v is None or _missing(v) or (isinstance(v, int | float) and not isinstance(v, bool)) for v in array)


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value) or type(value).__name__ in ("NAType", "NaTType")
    except (TypeError, ValueError):
        return False


def _floats(name: str, values: np.ndarray) -> np.ndarray:
    try:
        if values.dtype.kind == "O":
            values = np.array([math.nan if _missing(v) else v for v in values.ravel()], np.float64).reshape(
                values.shape
            )
        return values.astype(np.float32)
    except (TypeError, ValueError):
        raise InvalidArgument(f"column {name!r} holds values that are not numbers") from None


def _ids(name: str, values: Any, n: int) -> list[str]:
    items = list(values)
    if len(items) != n:
        raise InvalidArgument(f"entity ids {name!r}: {len(items)} values for {n} rows")
    return ["" if _missing(v) else str(v) for v in items]


# ---- answers
@dataclass(frozen=True)
class ModelResult:
    """One model's scores: [N, dim] float32, row i for request row i."""

    model: str  # "name@version"
    role: str  # primary, experiment, override, extra, shadow
    arm: str
    scores: np.ndarray


@dataclass(frozen=True)
class Prediction:
    """The answer to one predict call. `scores` and `model` are the answering model's (primary, experiment arm
    or override); `results` has every model scored, that one first."""

    prediction_id: str
    request_id: str
    results: tuple[ModelResult, ...]
    defaulted: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> rows that used its default
    response: PredictResponse = field(default_factory=PredictResponse, repr=False)

    @property
    def scores(self) -> np.ndarray:
        return self.results[0].scores

    @property
    def model(self) -> str:
        return self.results[0].model

    def to_pandas(self, all_models: bool = False) -> pd.DataFrame:
        """Columns "score" (or score_0..score_k for a model with k+1 outputs); with all_models, also one column
        per other model ("model@v", or "model@v[i]"). Needs pandas: `pip install 'sibyl[pandas]'`."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependency("pandas", "pandas", "Prediction.to_pandas()") from None

        data: dict[str, np.ndarray] = {}
        for index, result in enumerate(self.results if all_models else self.results[:1]):
            dim = result.scores.shape[1]
            if index == 0:
                names = ["score"] if dim == 1 else [f"score_{i}" for i in range(dim)]
            else:
                names = [result.model] if dim == 1 else [f"{result.model}[{i}]" for i in range(dim)]
            data.update({n: result.scores[:, i] for i, n in enumerate(names)})
        return pd.DataFrame(data)


def to_prediction(response: PredictResponse) -> Prediction:
    n = response.num_rows
    results = tuple(
        ModelResult(
            model=f"{r.model}@{r.version}" if r.version else r.model,
            role=Role.Name(r.role).removeprefix("ROLE_").lower(),
            arm=r.arm,
            scores=np.asarray(r.scores, dtype=np.float32).reshape(n, max(r.dim, 1)),
        )
        for r in response.results
    )
    defaulted = {d.feature: np.asarray(d.rows, dtype=np.int64) for d in response.defaulted}
    return Prediction(response.prediction_id, response.request_id, results, defaulted, response)
