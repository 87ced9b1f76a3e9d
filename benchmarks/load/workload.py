"""Inputs for every scenario: a benchmark model store, PredictRequests built from the model manifests, and
KServe V2 ModelInferRequests built with stock tritonclient.grpc (what a Triton client sends to any server).

Feature values are rows of the bundled sample (sibyl/examples/sample.csv), so the models see realistic
inputs; entity ids match sibyl/examples/features.jsonl (what redis-fill loads into Redis).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE
from sibyl.models.manifest import Manifest
from sibyl.v1 import predict_pb2

SAMPLE_CSV = EXAMPLE_STORE.parent / "sample.csv"
PRIMARY = "gbdt@1"
SECOND = "mlp@1"
# Predictors of the benchmark store: the example's models under routes each scenario needs. bench-shadow is the
# example predictor's route and verdict settings (its shadow, slices and thresholds).
EXAMPLE_VERDICTS = {
    k: v
    for k, v in json.loads((EXAMPLE_STORE / "predictors" / "example.json").read_text()).items()
    if k in ("decision_threshold", "alert_agreement", "positive_rate_shift", "slices")
}
PREDICTORS = {
    "bench": {"primary": PRIMARY, "shadows": []},
    "bench-shadow": {"primary": PRIMARY, "shadows": [{"model": SECOND, "sample": 1.0}], **EXAMPLE_VERDICTS},
    "bench-mlp": {"primary": SECOND, "shadows": []},
}
# Copies of gbdt@1 under new versions: extra models of a call that cost what the primary costs (growth runs).
COPIES = ("gbdt@2", "gbdt@3", "gbdt@4")


def manifest(ref: str, store: Path = EXAMPLE_STORE) -> Manifest:
    name, version = ref.split("@")
    return Manifest.model_validate_json((store / "models" / name / version / "manifest.json").read_text())


def model_path(ref: str, store: Path = EXAMPLE_STORE) -> Path:
    name, version = ref.split("@")
    return store / "models" / name / version / "model.onnx"


def make_store(dest: Path) -> Path:
    """Copy the example models into dest and add the benchmark predictors; returns dest."""
    shutil.copytree(EXAMPLE_STORE / "models", dest / "models", dirs_exist_ok=True)
    source = model_path(PRIMARY).parent
    for ref in COPIES:
        name, version = ref.split("@")
        folder = dest / "models" / name / version
        shutil.copytree(source, folder, dirs_exist_ok=True)
        meta = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**meta, "version": version}, indent=2))
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


# Run in a child interpreter: tritonclient registers its own `inference.*` protobuf types, which clash with
# sibyl's (same package, by design) in one process. Reads a .npy matrix on stdin, writes the request bytes.
TRITONCLIENT_BUILDER = """
import io, sys
import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import _utils
model, input_name = sys.argv[1], sys.argv[2]
matrix = np.load(io.BytesIO(sys.stdin.buffer.read()))
tensor = triton.InferInput(input_name, list(matrix.shape), "FP32")
tensor.set_data_from_numpy(matrix)
request = _utils._get_inference_request(
    model_name=model, inputs=[tensor], model_version="", request_id="", outputs=None, sequence_id=0,
    sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None,
)
sys.stdout.buffer.write(request.SerializeToString())
"""


def v2_request(model: str, ref: str, rows: int) -> bytes:
    """ModelInferRequest bytes for `model` (a sibyl predictor or a peer's model name): the sample's rows as one
    FP32 [rows, columns] tensor named after the ONNX input, in manifest column order (same values as the
    map-form requests)."""
    m = manifest(ref)
    return v2_infer_request(model, m.input_name, sample_matrix(m.columns, rows))


@functools.lru_cache(maxsize=64)
def _built(model: str, input_name: str, npy: bytes) -> bytes:
    done = subprocess.run(
        [sys.executable, "-c", TRITONCLIENT_BUILDER, model, input_name], input=npy, capture_output=True, timeout=60
    )
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"building the V2 request with tritonclient failed ({tail[0]}); pip install -e '.[bench]'")
    return done.stdout


def v2_infer_request(model: str, input_name: str, matrix: np.ndarray) -> bytes:
    """What tritonclient.grpc's InferenceServerClient.infer sends: InferInput.set_data_from_numpy (raw contents)
    through the client's own request builder, run in a child interpreter (see TRITONCLIENT_BUILDER)."""
    if matrix.ndim != 2:
        raise ValueError(f"expected a rows x columns matrix, got shape {matrix.shape}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(matrix, dtype=np.float32))
    return _built(model, input_name, buf.getvalue())
