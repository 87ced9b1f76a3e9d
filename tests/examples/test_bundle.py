"""The bundled example (sibyl/examples/) is consistent: models match manifests, features and request parse."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import json_format

from sibyl.config import EXAMPLE_FEATURES, EXAMPLE_STORE
from sibyl.models.baseline import compute_baselines
from sibyl.models.manifest import Manifest
from sibyl.models.predictor import PredictorConfig
from sibyl.models.publish import read_sample
from sibyl.v1.predict_pb2 import PredictRequest

EXAMPLES = EXAMPLE_STORE.parent
MODELS = ["gbdt", "mlp"]


def manifest_of(name: str) -> Manifest:
    return Manifest.model_validate_json((EXAMPLE_STORE / "models" / name / "1" / "manifest.json").read_text())


def session_of(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(EXAMPLE_STORE / "models" / name / "1" / "model.onnx"))


def sample(manifest: Manifest) -> np.ndarray:
    return read_sample(str(EXAMPLES / "sample.csv"), manifest.inputs)


@pytest.mark.parametrize("name", MODELS)
def test_model_matches_manifest(name: str) -> None:
    folder = EXAMPLE_STORE / "models" / name / "1"
    manifest = manifest_of(name)
    assert (manifest.name, manifest.version) == (name, "1")
    assert hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest() == manifest.sha256
    assert (folder / "model.onnx").stat().st_size < 300_000
    (model_input,) = session_of(name).get_inputs()
    assert model_input.name == manifest.input_name == "input"
    assert model_input.shape[1] == len(manifest.columns) == 16
    assert manifest.metadata["training"]["metric"]["auc_holdout"] > 0.65


@pytest.mark.parametrize("name", MODELS)
def test_scores_are_probabilities_and_baselines_reproduce(name: str) -> None:
    manifest = manifest_of(name)
    matrix = sample(manifest)
    probabilities = session_of(name).run([manifest.output.name], {manifest.input_name: matrix})[0]
    assert probabilities.shape == (len(matrix), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    scores = probabilities[:, manifest.output.column]
    assert np.all((scores >= 0) & (scores <= 1)) and scores.std() > 0.05  # not a constant model
    again = compute_baselines(manifest.inputs, matrix, scores)
    assert manifest.baselines is not None and manifest.baselines.prediction is not None
    assert again.features == manifest.baselines.features
    # Thread count changes float32 summation order in onnxruntime: score edges agree to ~1e-7, not bit for bit.
    np.testing.assert_allclose(again.prediction.edges, manifest.baselines.prediction.edges, atol=1e-5)
    assert again.prediction.counts == manifest.baselines.prediction.counts


def test_models_share_a_feature_set_with_entities() -> None:
    gbdt, mlp = (manifest_of(n) for n in MODELS)
    assert gbdt.inputs == mlp.inputs
    entities = {spec.entity for spec in gbdt.inputs}
    assert entities == {"consumer_id", "store_id", None}
    emb = next(spec for spec in gbdt.inputs if spec.name == "consumer_emb")
    assert (emb.dtype, emb.dim, emb.entity) == ("float_vector", 4, "consumer_id")


def test_predictor_names_existing_models() -> None:
    config = PredictorConfig.model_validate_json((EXAMPLE_STORE / "predictors" / "example.json").read_text())
    assert (config.name, config.primary, [s.model for s in config.shadows]) == ("example", "gbdt@1", ["mlp@1"])
    for ref in [config.primary, *(s.model for s in config.shadows)]:
        name, version = ref.split("@")
        assert (EXAMPLE_STORE / "models" / name / version / "manifest.json").is_file()


def test_features_file_covers_the_entity_features() -> None:
    manifest = manifest_of("gbdt")
    by_entity: dict[str, set[str]] = {}
    for spec in manifest.inputs:
        if spec.entity:
            by_entity.setdefault(spec.entity, set()).add(spec.name)
    dims = {spec.name: spec.dim for spec in manifest.inputs}
    ids: dict[str, set[str]] = {"consumer_id": set(), "store_id": set()}
    for line in Path(EXAMPLE_FEATURES).read_text().splitlines():
        record = json.loads(line)
        assert set(record) == {"entity", "id", "features"}
        assert set(record["features"]) == by_entity[record["entity"]]
        for name, value in record["features"].items():
            assert (len(value) if isinstance(value, list) else 1) == dims[name]
        ids[record["entity"]].add(record["id"])
    assert len(ids["consumer_id"]) == 200 and len(ids["store_id"]) == 100


def test_request_parses_and_refers_to_known_entities() -> None:
    request = json_format.Parse((EXAMPLES / "request.json").read_text(), PredictRequest())
    assert request.predictor == "example" and len(request.rows) == 2
    assert request.context["consumer_id"] == "7"
    request_only = {spec.name for spec in manifest_of("gbdt").inputs if spec.entity is None}
    for row in request.rows:
        assert set(row.features) == request_only
        assert 1 <= int(row.entities["store_id"]) <= 100


def test_sample_header_is_the_model_columns() -> None:
    with (EXAMPLES / "sample.csv").open() as fh:
        header = next(csv.reader(fh))
        rows = sum(1 for _ in fh)
    assert header == manifest_of("gbdt").columns
    assert rows == 500
