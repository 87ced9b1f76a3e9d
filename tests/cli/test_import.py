"""`sibyl models publish --sklearn/--xgboost/--lightgbm`: tiny models trained here, converted at publish, and
served with the original's scores (the ONNX and the source file are both stored)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sibyl.cli.main import main
from sibyl.models.catalog import Catalog
from sibyl.models.predictor import ModelRef
from sibyl.models.runtime import OnnxModel
from sibyl.models.store import FileStore
from tests.cli.error_line import one_error
from tests.cli.input_files import write_sample, write_spec
from tests.support.onnxgen import FEATURES

N = 200


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, 5)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 3] + 0.3 * rng.normal(size=N) > 0).astype(int)
    return x, y


def train(kind: str, x: np.ndarray, y: np.ndarray, path: Path) -> Any:
    """Fit a small model of `kind`, save it as a user would; returns the in-memory original."""
    if kind == "sklearn-classifier":
        model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
        joblib.dump(model, path)
    elif kind == "sklearn-regressor":
        model = GradientBoostingRegressor(n_estimators=20, max_depth=3).fit(x, x[:, 0] * 2 + x[:, 1])
        joblib.dump(model, path)
    elif kind == "xgboost":
        model = xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(x, y)
        model.get_booster().save_model(path)
    else:
        model = lgb.LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1).fit(x, y)
        model.booster_.save_model(path)
    return model


def original_scores(kind: str, model: Any, x: np.ndarray) -> np.ndarray:
    return model.predict(x) if kind == "sklearn-regressor" else model.predict_proba(x)[:, 1]


CASES = [
    ("sklearn-classifier", "--sklearn", "model.joblib", "probabilities"),
    ("sklearn-regressor", "--sklearn", "model.joblib", "variable"),
    ("xgboost", "--xgboost", "model.json", "probabilities"),
    ("lightgbm", "--lightgbm", "model.txt", "probabilities"),
]


@pytest.mark.parametrize(("kind", "flag", "file", "output"), CASES)
def test_import_converts_checks_and_stores_both_files(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str],
    kind: str, flag: str, file: str, output: str,
) -> None:  # fmt: skip
    x, y = data
    model = train(kind, x, y, tmp_path / file)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"inputs": [f.model_dump() for f in FEATURES]}))  # output: the converter's
    sample = write_sample(tmp_path / "sample.csv", x[:64])
    args = ["models", "publish", "m", "1", "--store", str(tmp_path / "store"), "--spec", str(spec)]
    assert main([*args, flag, str(tmp_path / file), "--sample", str(sample)]) == 0
    assert "scores matched within 0.0001" in capsys.readouterr().out

    catalog = Catalog(FileStore(tmp_path / "store"))
    ref = ModelRef("m", "1")
    manifest = catalog.read_manifest(ref)
    assert manifest.output.name == output and manifest.source is not None
    source = manifest.source
    assert source.format == flag[2:] and source.rows_checked == 64 and source.max_abs_diff <= 1e-4
    assert hashlib.sha256(catalog.read_file(ref, source.file)).hexdigest() == source.sha256
    assert catalog.read_file(ref, source.file) == (tmp_path / file).read_bytes()
    assert manifest.validation is not None and manifest.validation.producer.split()[0] in ("skl2onnx", "OnnxMLTools")
    assert manifest.validation.opsets.get("", 0) <= 21  # loads on the onnxruntime floor (1.20)

    # What the server loads scores every row (not only the sample) as the original does.
    served = OnnxModel(manifest, catalog.read_model(ref)).run(x)[:, 0]
    assert np.allclose(served, original_scores(kind, model, x), atol=1e-4, rtol=1e-4)
    assert main(["models", "validate", "m@1", "--store", str(tmp_path / "store")]) == 0
    assert f"{source.file} sha256" in capsys.readouterr().out


def test_import_refuses_scores_outside_the_tolerance(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    """LightGBM thresholds are float64, ONNX trees float32: scores differ in the last bits, so a tolerance far
    below float32 precision refuses the conversion, naming the row, and nothing is stored."""
    x, y = data
    train("lightgbm", x, y, tmp_path / "model.txt")
    spec = write_spec(tmp_path / "spec.json")
    sample = write_sample(tmp_path / "sample.csv", x)
    args = ["models", "publish", "m", "1", "--store", str(tmp_path / "store"), "--spec", str(spec)]
    assert (
        main([*args, "--lightgbm", str(tmp_path / "model.txt"), "--sample", str(sample), "--tolerance", "1e-12"]) == 2
    )
    line = one_error(capsys)
    assert "converted model differs from the original on sample row" in line and "tolerance 1e-12" in line
    assert not (tmp_path / "store" / "models").exists()


def test_import_mistakes_are_one_line(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = data
    train("xgboost", x, y, tmp_path / "model.json")
    spec = write_spec(tmp_path / "spec.json")
    sample = write_sample(tmp_path / "sample.csv", x[:10])
    base = ["models", "publish", "m", "1", "--store", str(tmp_path / "store"), "--spec", str(spec)]
    assert main([*base, "--xgboost", str(tmp_path / "model.json")]) == 2
    assert "--xgboost needs --sample CSV" in one_error(capsys)
    narrow = write_spec(tmp_path / "narrow.json", inputs=[f.model_dump() for f in FEATURES[:2]])
    narrow_sample = tmp_path / "narrow.csv"
    narrow_sample.write_text("amount,age\n1,2\n")
    args = [*base[:-1], str(narrow), "--xgboost", str(tmp_path / "model.json"), "--sample", str(narrow_sample)]
    assert main(args) == 2
    assert "model.json takes 5 columns, the spec's inputs give 2" in one_error(capsys)
    (tmp_path / "junk.json").write_text('{"not": "a booster"}')
    assert main([*base, "--xgboost", str(tmp_path / "junk.json"), "--sample", str(sample)]) == 2
    assert "not an XGBoost model file" in one_error(capsys)
    joblib.dump({"a": 1}, tmp_path / "dict.joblib")
    assert main([*base, "--sklearn", str(tmp_path / "dict.joblib"), "--sample", str(sample)]) == 2
    assert "holds a dict, not a fitted scikit-learn estimator" in one_error(capsys)
    (tmp_path / "model.txt").write_text("tree\nnot lightgbm\n")
    assert main([*base, "--lightgbm", str(tmp_path / "model.txt"), "--sample", str(sample)]) == 2
    assert "not a LightGBM model file" in one_error(capsys)
    wrong_output = write_spec(tmp_path / "out.json", output={"name": "label"})
    args = [*base[:-1], str(wrong_output), "--xgboost", str(tmp_path / "model.json"), "--sample", str(sample)]
    assert main(args) == 2
    assert "scores are in 'probabilities'" in one_error(capsys)
