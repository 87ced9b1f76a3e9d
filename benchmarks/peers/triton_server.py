"""Triton peer: tritonserver (bundled by nvidia-pytriton) serving an ONNX file through a PyTriton Python model
that calls onnxruntime. Runs inside .bench-venvs/triton (imports only pytriton, onnxruntime, numpy).

The bundled tritonserver ships only the Python backend (no onnxruntime backend), so the model is a PyTriton
callable: tritonserver -> python backend stub -> this process -> onnxruntime on the same model.onnx.

    python triton_server.py --model model.onnx --name gbdt --grpc-port P --http-port P2 --metrics-port P3
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from types import FrameType

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def security() -> dict[str, object]:
    """PyTriton restricts the statistics API behind a generated token by default; the benchmark counts answered
    calls through it (as against any stock tritonserver), so open that one and keep the rest restricted."""
    try:
        from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, TritonSecurityConfig
    except ImportError:  # a PyTriton without access tokens restricts nothing
        return {}
    endpoints = [e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"]
    return {"security_config": TritonSecurityConfig(restricted_endpoints=endpoints)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="path of the .onnx file")
    p.add_argument("--name", default="gbdt", help="model name clients use")
    p.add_argument("--output", default="probabilities", help="ONNX output to return")
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--max-batch-size", type=int, default=1024)
    args = p.parse_args(argv)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    columns = int(inp.shape[1])
    out_meta = next(o for o in session.get_outputs() if o.name == args.output)
    out_width = int(out_meta.shape[1]) if len(out_meta.shape) > 1 and isinstance(out_meta.shape[1], int) else -1

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        matrix = np.asarray(inputs[inp.name], dtype=np.float32)
        (out,) = session.run([args.output], {inp.name: matrix})
        return {args.output: np.asarray(out, dtype=np.float32)}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        exit_on_error=True,
    )
    with Triton(config=config, **security()) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=infer,
            inputs=[Tensor(name=inp.name, dtype=np.float32, shape=(columns,))],
            outputs=[Tensor(name=args.output, dtype=np.float32, shape=(out_width,))],
            config=ModelConfig(max_batch_size=args.max_batch_size),
            strict=True,
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        print(f"triton peer serving on 127.0.0.1:{args.grpc_port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
