"""A loaded model version: an onnxruntime session checked against its manifest and warmed up."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import onnxruntime as ort

from sibyl.compat.onnxruntime_run import run_function
from sibyl.errors import ModelLoadError
from sibyl.models.manifest import Manifest

# Batches of at least this many rows run on the session with `intra_op_threads` threads; smaller ones on a
# one-thread session. Measured on the bundled gbdt@1 and mlp@1 (benchmarks/README.md, "Inference threads"):
# below ~1,000 rows a second thread saves no wall time and costs CPU; docs/design.md states the rule.
MANY_ROWS = 1000
# A spinning onnxruntime pool busy-waits after every run: on 2 cores it burned more CPU than a single-row call
# itself. Off for both pools; the worker threads then sleep between runs.
NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    # Few threads per session: latency comes from many small calls, and worker processes share the cores.
    opts.intra_op_num_threads = max(1, intra_op_threads)
    opts.inter_op_num_threads = 1
    for key, value in NO_SPINNING.items():
        opts.add_session_config_entry(key, value)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    return opts


class OnnxModel:
    """Immutable once built; safe to share between concurrent requests (onnxruntime's run is thread-safe).

    intra_op_threads: threads for batches of at least MANY_ROWS rows. Above 1 the model holds a second session
    (the weights twice in memory) so that small batches keep one thread, no pool and no hand-off.
    """

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
        self.threads = max(1, intra_op_threads)
        self._session = self._load(model_bytes, 1)
        self._check_schema()
        self._many = self._load(model_bytes, self.threads) if self.threads > 1 else self._session
        # Each session's C++ run, without InferenceSession.run's Python checks (sibyl.compat.onnxruntime_run),
        # looked up once here rather than on every inference.
        self._run_one, self._run_many = run_function(self._session), run_function(self._many)
        self._input_name = manifest.input_name
        self._output = [manifest.output.name]
        self.default_row = np.array(
            [v for spec in manifest.inputs for v in spec.default_values], dtype=np.float32
        ).reshape(1, -1)
        self.dim, self.warmup_ms = self._warm_up()

    def _load(self, model_bytes: bytes, threads: int) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(
                model_bytes, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
            raise ModelLoadError(f"{self.manifest.ref}: onnxruntime cannot load model.onnx: {exc}") from None

    def session_for(self, rows: int) -> ort.InferenceSession:
        """The session a batch of `rows` rows runs on: one thread below MANY_ROWS, `threads` from there."""
        return self._many if rows >= MANY_ROWS else self._session

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
            if self._many is not self._session:  # its first run allocates too
                self._many.run(self._output, {self.manifest.input_name: np.repeat(self.default_row, 2, axis=0)})
            scores = self.run(np.repeat(self.default_row, 2, axis=0))
        except Exception as exc:
            raise ModelLoadError(f"{self.manifest.ref}: warm-up inference failed: {exc}") from None
        if scores.shape[0] != 2 or not np.all(np.isfinite(scores)):
            raise ModelLoadError(f"{self.manifest.ref}: warm-up gave unusable scores {scores.tolist()}")
        return scores.shape[1], (time.perf_counter() - start) * 1000

    def run(self, matrix: np.ndarray) -> np.ndarray:
        """float32 [N, columns] → float32 [N, dim]."""
        run = self._run_many if matrix.shape[0] >= MANY_ROWS else self._run_one  # as session_for chooses
        raw = run(self._output, {self._input_name: matrix}, None)[0]
        out = np.asarray(raw, dtype=np.float32)
        if out.ndim == 1:
            out = out.reshape(-1, 1)
        column = self.manifest.output.column
        if column is not None:
            out = out[:, column : column + 1]
        return out
