"""The echo floor: a grpc.aio server under uvloop answering every sibyl Predict and every KServe V2 ModelInfer
with a fixed answer of the request's size (one score per row, as sibyl answers for gbdt@1).

It parses the request and serializes the response like a real servicer, and does nothing else: the
transport floor any Python gRPC server on this machine pays, for each API.

    python -m benchmarks.scenarios.echo_server --port 0     # prints "echo serving on 127.0.0.1:P"
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from sibyl.v1 import predict_pb2, predict_pb2_grpc


def fixed_response(num_rows: int = 1) -> predict_pb2.PredictResponse:
    """What sibyl answers for a GBDT call of num_rows rows: one score per row, the primary model."""
    scores = predict_pb2.ModelScores(
        model="gbdt", version="1", role=predict_pb2.ROLE_PRIMARY, dim=1, scores=[0.5] * num_rows
    )
    return predict_pb2.PredictResponse(
        prediction_id="0190c7d2-5b4e-7a3c-9f00-000000000000",
        predictor="example",
        results=[scores],
        num_rows=num_rows,
    )


def fixed_v2_response(model: str, num_rows: int) -> v2.ModelInferResponse:
    """What sibyl's V2 endpoint answers for a raw-tensor request of num_rows rows: FP32 "score" [N, 1], raw."""
    out = v2.ModelInferResponse(model_name=model, model_version="1")
    out.outputs.add(name="score", datatype="FP32", shape=[num_rows, 1])
    out.raw_output_contents.append(b"\x00\x00\x00\x3f" * num_rows)  # 0.5f little-endian
    return out


class EchoServicer(predict_pb2_grpc.PredictionServiceServicer):
    def __init__(self) -> None:
        self.responses: dict[int, predict_pb2.PredictResponse] = {}

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        rows = request.dense.num_rows if request.HasField("dense") else len(request.rows)
        if rows not in self.responses:
            self.responses[rows] = fixed_response(rows)
        return self.responses[rows]


class EchoV2Servicer(v2_grpc.GRPCInferenceServiceServicer):
    def __init__(self) -> None:
        self.responses: dict[tuple[str, int], v2.ModelInferResponse] = {}

    async def ModelInfer(
        self, request: v2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelInferResponse:
        key = (request.model_name, int(request.inputs[0].shape[0]) if request.inputs and request.inputs[0].shape else 0)
        if key not in self.responses:
            self.responses[key] = fixed_v2_response(*key)
        return self.responses[key]


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    predict_pb2_grpc.add_PredictionServiceServicer_to_server(EchoServicer(), server)
    v2_grpc.add_GRPCInferenceServiceServicer_to_server(EchoV2Servicer(), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"echo serving on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scenarios.echo_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
