"""KServe 0.21 Python ModelServer: the Open Inference Protocol (V2) over gRPC and REST from one process, a
kserve.Model scoring the one FP32 [rows, columns] input with onnxruntime and answering the model's output as FP32.
ModelServer defaults (one worker), but the ports (given) and the listening address: KServe binds 0.0.0.0 (REST)
and [::] (gRPC) with no option to change it, so `loopback_only()` rewrites both to 127.0.0.1 before it starts (the
benchmark never listens beyond loopback). Runs by path inside the kserve venv:
`python kserve_app.py --name gbdt --http-port P --grpc-port Q`."""

from __future__ import annotations

import argparse
from typing import Any

import grpc.aio
import numpy as np
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import generate_uuid
from ort_model import OrtModel


class Gbdt(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.model = OrtModel()
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if len(payload.inputs) != 1:
            raise ValueError(f"send one FP32 tensor, got {len(payload.inputs)} inputs")
        out = self.model.run(np.asarray(payload.inputs[0].as_numpy(), dtype=np.float32))
        output = InferOutput(name=self.model.output, shape=list(out.shape), datatype="FP32")
        output.set_data_from_numpy(out, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id or generate_uuid())


def loopback_only() -> None:
    """uvicorn.Config(host="0.0.0.0") and grpc.aio add_insecure_port("[::]:P") -> 127.0.0.1, nothing else."""
    config_init = uvicorn.Config.__init__

    def config(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        config_init(self, *args, **{**kwargs, "host": "127.0.0.1"})

    uvicorn.Config.__init__ = config  # type: ignore[method-assign]
    server_class = type(grpc.aio.server())
    add_port = server_class.add_insecure_port

    def insecure_port(self: Any, address: str) -> int:
        return add_port(self, address.replace("[::]:", "127.0.0.1:").replace("0.0.0.0:", "127.0.0.1:"))

    server_class.add_insecure_port = insecure_port  # type: ignore[method-assign]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    loopback_only()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start([Gbdt(args.name)])
