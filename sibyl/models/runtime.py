"""A loaded model version: an onnxruntime session checked against its manifest and warmed up."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import onnxruntime as ort

from sibyl.errors import ModelLoadError
from sibyl.models.manifest import Manifest


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    # Few threads per session: latency comes from many small calls, and worker processes share the cores.
    opts.intra_op_num_threads = max(1, intra_op_threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    return opts


class OnnxModel:
    """Immutable once built; safe to share between concurrent requests (onnxruntime's run is thread-safe)."""

    def __init__(self, manifest: Manifest, model_bytes: bytes, intra_op_threads: int = 1) -> None:
        self.manifest = manifest
        self.name, self.version = manifest.name, manifest.version
        self.key, self.ref = manifest.key, manifest.ref  # attributes, not properties: read on every request
        self.columns = manifest.columns
        self.column_set = frozenset(self.columns)
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != manifest.sha256:
            raise ModelLoadError(
                f"{manifest.ref}: model.onnx sha256 {digest[:12]}… != manifest {manifest.sha256[:12]}…"
            )
        try:
            self._session = ort.InferenceSession(
                model_bytes, sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
            raise ModelLoadError(f"{manifest.ref}: onnxruntime cannot load model.onnx: {exc}") from None
        self._check_schema()
        self._output = [manifest.output.name]
        self.default_row = np.array(
            [v for spec in manifest.inputs for v in spec.default_values], dtype=np.float32
        ).reshape(1, -1)
        self.dim, self.warmup_ms = self._warm_up()

    def _check_schema(self) -> None:
        m = self.manifest
        inputs = {i.name: i for i in self._session.get_inputs()}
        if m.input_name not in inputs or len(inputs) != 1:
            raise ModelLoadError(f"{m.ref}: model inputs {sorted(inputs)} != manifest input_name {m.input_name!r}")
        spec = inputs[m.input_name]
        if spec.type != "tensor(float)":
            raise ModelLoadError(f"{m.ref}: input {m.input_name} is {spec.type}, sibyl feeds tensor(float)")
        width = spec.shape[-1] if len(spec.shape) == 2 else None
        if isinstance(width, int) and width != len(self.columns):
            raise ModelLoadError(f"{m.ref}: model takes {width} columns, manifest lists {len(self.columns)}")
        outputs = [o.name for o in self._session.get_outputs()]
        if m.output.name not in outputs:
            raise ModelLoadError(f"{m.ref}: output {m.output.name!r} not among model outputs {outputs}")

    def _warm_up(self) -> tuple[int, float]:
        """One inference on defaults: finds the score width and takes the slow first run off the request path."""
        start = time.perf_counter()
        try:
            scores = self.run(np.repeat(self.default_row, 2, axis=0))
        except Exception as exc:
            raise ModelLoadError(f"{self.manifest.ref}: warm-up inference failed: {exc}") from None
        if scores.shape[0] != 2 or not np.all(np.isfinite(scores)):
            raise ModelLoadError(f"{self.manifest.ref}: warm-up gave unusable scores {scores.tolist()}")
        return scores.shape[1], (time.perf_counter() - start) * 1000

    def run(self, matrix: np.ndarray) -> np.ndarray:
        """float32 [N, columns] → float32 [N, dim]."""
        out = self._session.run(self._output, {self.manifest.input_name: matrix})[0]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 1:
            out = out.reshape(-1, 1)
        column = self.manifest.output.column
        if column is not None:
            out = out[:, column : column + 1]
        return out
