"""limit-grpc-echo: a grpc.aio server under uvloop answering every Predict with one fixed PredictResponse.

It parses the request and serializes the response like a real servicer, and does nothing else: the
transport floor any Python gRPC server on this machine pays.

    python -m benchmarks.scenarios.echo_server --port 0     # prints "echo serving on 127.0.0.1:P"
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

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


class EchoServicer(predict_pb2_grpc.PredictionServiceServicer):
    def __init__(self, response: predict_pb2.PredictResponse) -> None:
        self.response = response

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return self.response


async def serve(host: str, port: int, rows: int) -> None:
    server = grpc.aio.server()
    predict_pb2_grpc.add_PredictionServiceServicer_to_server(EchoServicer(fixed_response(rows)), server)
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
    parser.add_argument("--rows", type=int, default=1, help="scores in the fixed response")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.host, args.port, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
