"""Train the bundled example models and write sibyl/examples/ (store, features, request, sample).

    pip install -e '.[train]' && python examples/train_models.py

A synthetic but plausible "will this consumer order from this store" dataset: consumer features (history,
a 4-dim taste embedding), store features (rating, prep time, volume, cancels) and request-only features
(distance, hour, weekend, promo). Two real models are trained on it with a fixed seed, a gradient-boosted
trees classifier ("gbdt") and an MLP ("mlp"), exported to ONNX (input "input" float32 [N, 16], outputs
"label" and "probabilities" [N, 2]) and checked against scikit-learn before anything is written. Everything
is regenerated deterministically, so serving the example needs no training libraries.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from delivery_data import logit, request_features  # examples/: the world the models learn (simulate.py's too)
from google.protobuf import json_format
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sibyl.models.baseline import compute_baselines
from sibyl.models.manifest import FeatureSpec, Manifest, OutputSpec
from sibyl.models.predictor import PredictorConfig, Shadow
from sibyl.models.publish import read_sample
from sibyl.models.runtime import OnnxModel
from sibyl.v1.predict_pb2 import PredictRequest

SEED = 7
N_CONSUMERS, N_STORES, N_ROWS, N_SAMPLE = 200, 100, 8000, 500
CREATED_AT = "2025-01-01T00:00:00Z"  # fixed, so regenerating changes nothing unless the models change
OUT = Path(__file__).resolve().parent.parent / "sibyl" / "examples"
OPSET = {"": 17, "ai.onnx.ml": 3}

C, S = "consumer_id", "store_id"
INPUTS = [
    FeatureSpec(name="consumer_orders_30d", entity=C, default=2.0),
    FeatureSpec(name="consumer_avg_basket_usd", entity=C, default=25.0),
    FeatureSpec(name="consumer_days_since_order", entity=C, default=14.0),
    FeatureSpec(name="consumer_app_opens_7d", entity=C, default=4.0),
    FeatureSpec(name="consumer_emb", entity=C, dtype="float_vector", dim=4, default=(0.0, 0.0, 0.0, 0.0)),
    FeatureSpec(name="store_rating", entity=S, default=4.4),
    FeatureSpec(name="store_prep_time_min", entity=S, default=15.0),
    FeatureSpec(name="store_orders_7d", entity=S, default=150.0),
    FeatureSpec(name="store_cancel_rate", entity=S, default=0.03),
    FeatureSpec(name="distance_km", default=3.0),
    FeatureSpec(name="hour_of_day", default=18.0),
    FeatureSpec(name="is_weekend", default=0.0),
    FeatureSpec(name="promo_pct", default=0.0),
]
OUTPUT = OutputSpec(name="probabilities", column=1)


@dataclass
class Data:
    consumers: dict[str, np.ndarray]  # feature -> [N_CONSUMERS] or [N_CONSUMERS, 4]
    stores: dict[str, np.ndarray]
    x: np.ndarray  # [N_ROWS, 16] float32 in manifest column order
    y: np.ndarray  # [N_ROWS] 0/1


def make_data(rng: np.random.Generator) -> Data:
    consumers = {
        "consumer_orders_30d": rng.poisson(3.0, N_CONSUMERS).astype(float),
        "consumer_avg_basket_usd": np.round(rng.lognormal(3.2, 0.4, N_CONSUMERS), 2),
        "consumer_days_since_order": np.round(rng.exponential(10.0, N_CONSUMERS), 1),
        "consumer_app_opens_7d": rng.poisson(5.0, N_CONSUMERS).astype(float),
        "consumer_emb": np.round(rng.normal(0.0, 0.5, (N_CONSUMERS, 4)), 4),
    }
    stores = {
        "store_rating": np.round(np.clip(rng.normal(4.4, 0.3, N_STORES), 1.0, 5.0), 1),
        "store_prep_time_min": np.round(rng.gamma(6.0, 2.5, N_STORES), 1),
        "store_orders_7d": np.round(rng.lognormal(5.0, 0.7, N_STORES)),
        "store_cancel_rate": np.round(rng.beta(1.0, 30.0, N_STORES), 4),
    }
    ci, si = rng.integers(0, N_CONSUMERS, N_ROWS), rng.integers(0, N_STORES, N_ROWS)
    request = request_features(rng, N_ROWS)
    cols = {**{k: v[ci] for k, v in consumers.items()}, **{k: v[si] for k, v in stores.items()}, **request}
    x = np.column_stack([cols[spec.name] for spec in INPUTS]).astype(np.float32)
    y = (rng.random(N_ROWS) < 1 / (1 + np.exp(-logit(cols)))).astype(int)
    return Data(consumers, stores, x, y)


def export(model: object, n_columns: int, x_check: np.ndarray) -> bytes:
    """ONNX with outputs label + probabilities [N, 2]; refuses to return unless it matches scikit-learn."""
    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, n_columns]))],
        options={"zipmap": False},
        target_opset=OPSET,
    )
    # skl2onnx lists opsets in set order, which changes with Python's string hash seed: sort for stable bytes.
    opsets = sorted(onx.opset_import, key=lambda o: o.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    data = onx.SerializeToString()
    manifest = manifest_for("check", data, {}, None)
    got = OnnxModel(manifest, data).run(x_check)[:, 0]
    want = model.predict_proba(x_check)[:, 1]  # type: ignore[attr-defined]
    worst = float(np.max(np.abs(got - want)))
    if worst > 1e-4:
        raise SystemExit(f"ONNX export differs from scikit-learn by {worst:.2e} (> 1e-4)")
    return data


def manifest_for(name: str, data: bytes, metadata: dict[str, object], baselines: object) -> Manifest:
    return Manifest(
        name=name,
        version="1",
        input_name="input",
        inputs=INPUTS,
        output=OUTPUT,
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=CREATED_AT,
        metadata=metadata,
        baselines=baselines,
    )


def write_store(models: dict[str, tuple[bytes, dict[str, object]]], sample: np.ndarray) -> None:
    store = OUT / "store"
    shutil.rmtree(store, ignore_errors=True)
    for name, (data, metadata) in models.items():
        scores = OnnxModel(manifest_for(name, data, {}, None), data).run(sample)[:, 0]
        manifest = manifest_for(name, data, metadata, compute_baselines(INPUTS, sample, scores))
        folder = store / "models" / name / "1"
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(data)
        (folder / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
    predictor = PredictorConfig(
        name="example", primary="gbdt@1", shadows=[Shadow(model="mlp@1", sample=1.0)], updated_at=CREATED_AT
    )
    (store / "predictors").mkdir(parents=True)
    (store / "predictors" / "example.json").write_text(predictor.model_dump_json(indent=2) + "\n")


def write_features(data: Data) -> None:
    lines = []
    for entity, table, n in ((C, data.consumers, N_CONSUMERS), (S, data.stores, N_STORES)):
        for i in range(n):
            features = {k: v[i].tolist() for k, v in table.items()}
            lines.append(json.dumps({"entity": entity, "id": str(i + 1), "features": features}))
    (OUT / "features.jsonl").write_text("\n".join(lines) + "\n")


def write_sample(x: np.ndarray) -> np.ndarray:
    """A CSV of model columns, as `sibyl models publish --sample` reads it; returns what publish would read."""
    path = OUT / "sample.csv"
    columns = [c for spec in INPUTS for c in spec.columns]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[f"{v:.6g}" for v in row] for row in x.tolist()])
    return read_sample(str(path), INPUTS)


def write_request() -> None:
    """Written as plain JSON in a readable key order, and parsed as a PredictRequest to prove it is one."""

    def row(distance_km: float, promo_pct: float, store_id: str) -> dict[str, object]:
        features = {"distance_km": distance_km, "hour_of_day": 19.0, "is_weekend": 0.0, "promo_pct": promo_pct}
        return {"features": features, "entities": {"store_id": store_id}}

    request = {
        "request_id": "example-1",
        "predictor": "example",
        "context": {"consumer_id": "7"},
        "rows": [row(1.8, 10.0, "3"), row(6.5, 0.0, "42")],
    }
    json_format.ParseDict(request, PredictRequest())
    (OUT / "request.json").write_text(json.dumps(request, indent=2) + "\n")


def train(data: Data) -> tuple[dict[str, tuple[bytes, dict[str, object]]], np.ndarray]:
    n_train = int(len(data.y) * 0.75)
    x_train, y_train, x_test, y_test = data.x[:n_train], data.y[:n_train], data.x[n_train:], data.y[n_train:]
    candidates: dict[str, tuple[object, dict[str, object]]] = {
        "gbdt": (
            GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=0.1, random_state=SEED),
            {"algorithm": "GradientBoostingClassifier", "n_estimators": 100, "max_depth": 3, "learning_rate": 0.1},
        ),
        "mlp": (
            make_pipeline(
                StandardScaler(),
                MLPClassifier(
                    hidden_layer_sizes=(32, 16), alpha=1e-2, early_stopping=True, max_iter=300, random_state=SEED
                ),
            ),
            {
                "algorithm": "StandardScaler + MLPClassifier",
                "hidden_layer_sizes": [32, 16],
                "alpha": 1e-2,
                "early_stopping": True,
            },
        ),
    }
    out = {}
    for name, (model, params) in candidates.items():
        model.fit(x_train, y_train)  # type: ignore[attr-defined]
        est = model[-1] if isinstance(model, Pipeline) else model
        auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])  # type: ignore[attr-defined]
        metadata: dict[str, object] = {
            "training": {
                **params,
                "dataset": f"synthetic delivery conversion (examples/train_models.py, seed {SEED})",
                "n_train": n_train,
                "n_holdout": len(y_test),
                "positive_rate": round(float(data.y.mean()), 4),
                "metric": {"auc_holdout": round(float(auc), 4)},
                "iterations": int(getattr(est, "n_iter_", getattr(est, "n_estimators_", 0))),
                "libraries": {lib: version(lib) for lib in ("scikit-learn", "skl2onnx", "onnx", "numpy")},
            }
        }
        out[name] = (export(model, data.x.shape[1], x_test), metadata)
        print(f"{name}: holdout AUC {auc:.4f}, ONNX {len(out[name][0]) / 1024:.0f} KB")
    return out, x_test[:N_SAMPLE]


def main() -> None:
    data = make_data(np.random.default_rng(SEED))
    with threadpool_limits(1):  # multi-threaded BLAS sums in a different order on each run: bytes would differ
        models, holdout = train(data)
    OUT.mkdir(parents=True, exist_ok=True)
    sample = write_sample(holdout)
    write_store(models, sample)
    write_features(data)
    write_request()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
