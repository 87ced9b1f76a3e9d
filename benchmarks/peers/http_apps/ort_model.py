"""The one model every HTTP peer app serves: onnxruntime on the benchmark's model.onnx with ONE intra-op thread
(sibyl's sessions and the MLServer runtime use one too), its output `SIBYL_PEER_OUTPUT`'s positive-class column.

Runs inside a peer's venv (its dir is on PYTHONPATH): imports only onnxruntime and numpy. The apps read where the
model is from the environment (SIBYL_PEER_MODEL, SIBYL_PEER_OUTPUT) so each framework's own loader (BentoML's
service import, LitServe's worker processes, Ray Serve's replica actors) finds it without arguments.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort


class OrtModel:
    def __init__(self, path: str | None = None, output: str | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        model = path or os.environ["SIBYL_PEER_MODEL"]
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = output or os.environ.get("SIBYL_PEER_OUTPUT") or self.session.get_outputs()[-1].name

    def run(self, matrix: np.ndarray) -> np.ndarray:
        """The model's output for a float32 [rows, columns] matrix (e.g. [rows, 2] probabilities)."""
        (out,) = self.session.run([self.output], {self.input: np.asarray(matrix, dtype=np.float32)})
        return np.asarray(out, dtype=np.float32)

    def scores(self, rows: list[list[float]]) -> list[float]:
        """One score per row: the positive class's probability (column 1 of a [rows, 2] output)."""
        out = self.run(np.asarray(rows, dtype=np.float32))
        return (out[:, 1] if out.ndim == 2 and out.shape[1] > 1 else out.reshape(-1)).tolist()
