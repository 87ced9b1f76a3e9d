"""Inputs for every scenario: a benchmark model store and PredictRequests built from the model manifests.

Feature values are rows of the bundled sample (sibyl/examples/sample.csv), so the models see realistic
inputs; entity ids match sibyl/examples/features.jsonl (what redis-fill loads into Redis).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE
from sibyl.models.manifest import Manifest
from sibyl.v1 import predict_pb2

SAMPLE_CSV = EXAMPLE_STORE.parent / "sample.csv"
PRIMARY = "gbdt@1"
SECOND = "mlp@1"
# Predictors of the benchmark store: the example's models under routes each scenario needs.
PREDICTORS = {
    "bench": {"primary": PRIMARY, "shadows": []},
    "bench-shadow": {"primary": PRIMARY, "shadows": [{"model": SECOND, "sample": 1.0}]},
    "bench-mlp": {"primary": SECOND, "shadows": []},
}


def manifest(ref: str, store: Path = EXAMPLE_STORE) -> Manifest:
    name, version = ref.split("@")
    return Manifest.model_validate_json((store / "models" / name / version / "manifest.json").read_text())


def model_path(ref: str, store: Path = EXAMPLE_STORE) -> Path:
    name, version = ref.split("@")
    return store / "models" / name / version / "model.onnx"


def make_store(dest: Path) -> Path:
    """Copy the example models into dest and add the benchmark predictors; returns dest."""
    shutil.copytree(EXAMPLE_STORE / "models", dest / "models", dirs_exist_ok=True)
    (dest / "predictors").mkdir(parents=True, exist_ok=True)
    for name, route in PREDICTORS.items():
        config = {"name": name, **route, "experiments": [], "unit_key": "consumer_id"}
        (dest / "predictors" / f"{name}.json").write_text(json.dumps(config, indent=2))
    return dest


def sample_matrix(columns: list[str], rows: int) -> np.ndarray:
    """rows x columns float32 from the bundled sample, cycling through it."""
    with SAMPLE_CSV.open() as f:
        records = list(csv.DictReader(f))
    missing = [c for c in columns if c not in records[0]]
    if missing:
        raise ValueError(f"sample.csv has no column(s) {missing}")
    out = np.empty((rows, len(columns)), dtype=np.float32)
    for i in range(rows):
        rec = records[i % len(records)]
        out[i] = [float(rec[c]) for c in columns]
    return out


def _row(m: Manifest, values: np.ndarray, names: set[str] | None) -> predict_pb2.FeatureRow:
    """One map-form row with the manifest's features (all, or only `names`)."""
    row = predict_pb2.FeatureRow()
    col = 0
    for spec in m.inputs:
        width = len(spec.columns)
        if names is None or spec.name in names:
            if spec.dtype == "float":
                row.features[spec.name] = float(values[col])
            else:
                row.vectors[spec.name].values.extend(float(v) for v in values[col : col + width])
        col += width
    return row


def _map_request(
    predictor: str, ref: str, rows: int, consumer: str, names: set[str] | None, extra_models: tuple[str, ...] = ()
) -> bytes:
    """Map-form rows of the sample with the manifest's features (all, or only `names`), one store per row."""
    m = manifest(ref)
    values = sample_matrix(m.columns, rows)
    req = predict_pb2.PredictRequest(predictor=predictor, extra_models=list(extra_models))
    req.context["consumer_id"] = consumer
    for i in range(rows):
        row = req.rows.add()
        row.CopyFrom(_row(m, values[i], names))
        row.entities["store_id"] = str(i % 100 + 1)
    return req.SerializeToString()


def request_features(predictor: str, ref: str, rows: int, extra_models: tuple[str, ...] = ()) -> bytes:
    """Every feature in the request (map form): nothing to fetch."""
    return _map_request(predictor, ref, rows, "1", None, extra_models)


def request_fetch(predictor: str, ref: str, rows: int) -> bytes:
    """Only request-level features in the rows; entity features (consumer + one store per row) are fetched."""
    own = {spec.name for spec in manifest(ref).inputs if spec.entity is None}
    return _map_request(predictor, ref, rows, "7", own)


def request_dense(predictor: str, ref: str, rows: int) -> bytes:
    """Dense form: feature names once, float32 values packed row-major."""
    m = manifest(ref)
    values = sample_matrix(m.columns, rows)
    dense = predict_pb2.DenseRows(feature_names=m.columns, values=values.tobytes(), num_rows=rows)
    req = predict_pb2.PredictRequest(predictor=predictor, dense=dense)
    req.context["consumer_id"] = "1"
    return req.SerializeToString()


def feature_records(path: Path = EXAMPLE_FEATURES) -> list[dict[str, object]]:
    """The example feature snapshot: {"entity", "id", "features"} per line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
