"""Models and predictors: the blob store (store) and its layout (catalog), version manifests (manifest),
predictor configs and model refs (predictor), loaded onnxruntime sessions (runtime), the hot-swapping registry
(registry), baselines from a training sample (publish, baseline) and live drift against them (drift), and the
model store settings (settings). Publishing checks a version first (validate) and converts scikit-learn, XGBoost
and LightGBM models to ONNX (convert).

May import (tests/test_layout.py RANK): observability, errors and the generated v1/kserve code; nothing above.
"""
