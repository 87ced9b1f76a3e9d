"""An MLServer runtime that scores an ONNX file with onnxruntime: the peer serves the very file sibyl serves.

Runs inside MLServer's own venv (.bench-venvs/mlserver): it imports only mlserver, onnxruntime and numpy.
model-settings.json: {"implementation": "onnx_runtime.OnnxRuntimeModel", "parameters": {"uri": "/abs/model.onnx",
"extra": {"output": "probabilities"}}}. Input: the model's single float input as one FP32 [rows, columns] tensor.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self.settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one request is one tiny model call; sibyl's sessions use 1 thread too
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        self._output = str(extra.get("output") or self._session.get_outputs()[-1].name)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if len(payload.inputs) != 1:
            raise ValueError(f"send one FP32 tensor {self._input!r}, got {len(payload.inputs)} inputs")
        matrix = np.asarray(self.decode(payload.inputs[0], default_codec=NumpyCodec), dtype=np.float32)
        (out,) = self._session.run([self._output], {self._input: matrix})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(self._output, np.asarray(out, dtype=np.float32))],
        )
