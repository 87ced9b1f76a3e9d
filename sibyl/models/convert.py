"""Trained models to ONNX at publish time: scikit-learn (joblib), XGBoost (JSON) and LightGBM (text).

Needs the `import` extra (pip install 'sibyl[import]'): skl2onnx, onnxmltools and the model's own library.
The converted model is only published when its scores equal the original's on the sample, within
`tolerance` absolute plus `tolerance` relative per score (float32 trees and float64 originals can differ in
the last bits; a wrong conversion differs by far more).

Classifiers output "probabilities" [N, classes] (binary: column 1 is P(class 1)); regressors output
"variable" [N, 1].
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sibyl.errors import InvalidArgument, MissingDependency
from sibyl.models.manifest import OutputSpec, Source

Format = Literal["sklearn", "xgboost", "lightgbm"]
FORMATS: dict[Format, str] = {"sklearn": "source.joblib", "xgboost": "source.xgb.json", "lightgbm": "source.lgb.txt"}
TOLERANCE = 1e-4
# skl2onnx stamps the newest opset it knows, which an older onnxruntime (the floor, 1.20: opset 21) refuses;
# 17 and ML 3 load on every supported onnxruntime. onnxmltools already stays at 15 for trees.
SKLEARN_OPSETS = {"": 17, "ai.onnx.ml": 3}
PROBABILITIES, VARIABLE = "probabilities", "variable"


@dataclass
class Converted:
    onnx: bytes
    output: OutputSpec  # the converter's score output (column 1 for binary classifiers)
    width: int  # input columns the trained model takes
    original: Callable[[np.ndarray], np.ndarray]  # float32 [N, width] -> [N, outputs] in the ONNX output's layout
    library: str
    converter: str


def _need(module: str, package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(package, "import", purpose) from None


def _as_probabilities(p: np.ndarray) -> np.ndarray:
    """Binary libraries give P(class 1) [N]; ONNX converters give [N, 2]."""
    p = np.asarray(p, dtype=np.float64)
    return np.column_stack([1 - p, p]) if p.ndim == 1 else p


def _sklearn(path: Path, input_name: str) -> Converted:
    joblib = _need("joblib", "scikit-learn", "importing a scikit-learn model")
    base = _need("sklearn.base", "scikit-learn", "importing a scikit-learn model")
    skl2onnx = _need("skl2onnx", "skl2onnx", "converting a scikit-learn model")
    from skl2onnx.common.data_types import FloatTensorType

    try:
        model = joblib.load(path)
    except Exception as exc:  # pickle raises anything
        raise InvalidArgument(
            f"{path}: not a joblib file of a scikit-learn model ({type(exc).__name__}: {exc})"
        ) from None
    width = getattr(model, "n_features_in_", None)
    if not isinstance(width, int) or not hasattr(model, "predict"):
        raise InvalidArgument(f"{path}: holds a {type(model).__name__}, not a fitted scikit-learn estimator")
    classifier = base.is_classifier(model)
    try:
        proto = skl2onnx.convert_sklearn(
            model,
            initial_types=[(input_name, FloatTensorType([None, width]))],
            options={"zipmap": False} if classifier else None,
            target_opset=SKLEARN_OPSETS,
        )
    except Exception as exc:  # skl2onnx raises RuntimeError/NameError/... for unsupported estimators
        raise InvalidArgument(f"{path}: skl2onnx cannot convert {type(model).__name__}: {exc}") from None

    def original(x: np.ndarray) -> np.ndarray:
        out = model.predict_proba(x) if classifier else model.predict(x)
        return np.asarray(out, dtype=np.float64).reshape(len(x), -1)

    import sklearn

    return Converted(
        proto.SerializeToString(),
        OutputSpec(name=PROBABILITIES, column=1) if classifier else OutputSpec(name=VARIABLE),
        width,
        original,
        f"scikit-learn {sklearn.__version__}",
        f"skl2onnx {skl2onnx.__version__}",
    )


def _xgboost(path: Path, input_name: str) -> Converted:
    xgb = _need("xgboost", "xgboost", "importing an XGBoost model")
    onnxmltools = _need("onnxmltools", "onnxmltools", "converting an XGBoost model")
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except Exception as exc:  # xgboost.core.XGBoostError
        raise InvalidArgument(f"{path}: not an XGBoost model file: {str(exc).splitlines()[0]}") from None
    objective = _xgb_objective(booster)
    return _trees(
        path,
        input_name,
        booster.num_features(),
        objective,
        objective.startswith(("binary:", "multi:")),
        lambda types: onnxmltools.convert_xgboost(booster, initial_types=types),
        lambda x: booster.predict(xgb.DMatrix(x)),
        ("XGBoost", f"xgboost {xgb.__version__}", f"onnxmltools {onnxmltools.__version__}"),
    )


def _xgb_objective(booster: Any) -> str:
    import json

    try:
        return str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    except (KeyError, ValueError):
        return "unknown objective"


def _lightgbm(path: Path, input_name: str) -> Converted:
    lgb = _need("lightgbm", "lightgbm", "importing a LightGBM model")
    onnxmltools = _need("onnxmltools", "onnxmltools", "converting a LightGBM model")
    try:
        booster = lgb.Booster(model_file=str(path))
    except Exception as exc:  # lightgbm.basic.LightGBMError
        raise InvalidArgument(f"{path}: not a LightGBM model file: {str(exc).splitlines()[0]}") from None
    objective = str(booster.dump_model(num_iteration=0).get("objective", "")).split(" ")[0]
    return _trees(
        path,
        input_name,
        booster.num_feature(),
        objective,
        objective in ("binary", "multiclass", "multiclassova", "cross_entropy"),
        lambda types: onnxmltools.convert_lightgbm(booster, initial_types=types, zipmap=False),
        booster.predict,
        ("LightGBM", f"lightgbm {lgb.__version__}", f"onnxmltools {onnxmltools.__version__}"),
    )


def _trees(
    path: Path,
    input_name: str,
    width: int,
    objective: str,
    classifier: bool,
    to_onnx: Callable[[list[tuple[str, Any]]], Any],
    predict: Callable[[np.ndarray], Any],
    names: tuple[str, str, str],
) -> Converted:
    """A loaded XGBoost or LightGBM booster converted by onnxmltools (to_onnx, given the initial types);
    predict: the booster's own scores. names: the kind of model for errors, then library and converter."""
    from onnxmltools.convert.common.data_types import FloatTensorType

    kind, library, converter = names
    try:
        proto = to_onnx([(input_name, FloatTensorType([None, width]))])
    except Exception as exc:
        raise InvalidArgument(f"{path}: onnxmltools cannot convert this {kind} model ({objective}): {exc}") from None

    def original(x: np.ndarray) -> np.ndarray:
        out = predict(x)
        return _as_probabilities(out) if classifier else np.asarray(out, np.float64).reshape(len(x), -1)

    return Converted(
        proto.SerializeToString(),
        OutputSpec(name=PROBABILITIES, column=1) if classifier else OutputSpec(name=VARIABLE),
        width,
        original,
        library,
        converter,
    )


CONVERTERS: dict[Format, Callable[[Path, str], Converted]] = {
    "sklearn": _sklearn,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
}


def convert(fmt: Format, path: str, input_name: str) -> tuple[Converted, bytes]:
    """The converted model and the original file's bytes (stored beside model.onnx)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    return CONVERTERS[fmt](file, input_name), raw


def compare(
    fmt: Format, converted: Converted, raw: bytes, onnx_scores: np.ndarray, sample: np.ndarray, tolerance: float
) -> Source:
    """The Source record when the ONNX scores (as the server reads them) equal the original's; else
    InvalidArgument naming the worst row."""
    full = converted.original(sample)
    column = converted.output.column
    expected = full[:, column : column + 1] if column is not None else full
    if expected.shape != onnx_scores.shape:
        raise InvalidArgument(f"converted model gives scores {onnx_scores.shape}, the original {expected.shape}")
    diff = np.abs(onnx_scores.astype(np.float64) - expected)
    worst = int(np.argmax(diff.max(axis=1)))
    if np.any(diff > tolerance * (1 + np.abs(expected))):
        raise InvalidArgument(
            f"converted model differs from the original on sample row {worst + 1}: onnx "
            f"{onnx_scores[worst].tolist()} vs {fmt} {expected[worst].tolist()} (tolerance {tolerance:g}); not published"
        )
    return Source(
        format=fmt,
        file=FORMATS[fmt],
        sha256=hashlib.sha256(raw).hexdigest(),
        library=converted.library,
        converter=converted.converter,
        tolerance=tolerance,
        max_abs_diff=float(diff.max()),
        rows_checked=len(sample),
    )
