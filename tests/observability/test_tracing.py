"""OpenTelemetry tracing on a real server: spans per call and stage, parented on the caller's W3C trace context
from gRPC metadata (v1 and V2) and HTTP headers, exported over OTLP/HTTP to a loopback receiver; off by default."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.kserve.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server

TRACE_IDS = {
    "v1": "0af7651916cd43dd8448eb211c80319c",
    "v2": "1bf7651916cd43dd8448eb211c80319d",
    "rest": "2cf7651916cd43dd8448eb211c80319e",
}
PARENT = "b7ad6b7169203331"
STAGES = ["route", "features", "infer", "encode"]


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{PARENT}-01"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback OTLP/HTTP endpoint that keeps every export body."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/traces", bodies
    finally:
        server.shutdown()
        thread.join(5)


def rest_infer(port: int, trace_id: str) -> int:
    body = json.dumps({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP32", "data": [1.0]}]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/p/infer", data=body, headers={"traceparent": traceparent(trace_id)}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


async def test_spans_per_call_and_stage_follow_the_callers_trace(
    store: Path, receiver: tuple[str, list[bytes]]
) -> None:
    endpoint, bodies = receiver
    memory = InMemorySpanExporter()
    tracing = {"enabled": True, "exporter": "otlp", "endpoint": endpoint}
    async with running_server(store, tracing=tracing) as server:
        assert server.service.tracing is not None
        server.service.tracing.provider.add_span_processor(SimpleSpanProcessor(memory))
        request = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            metadata = (("traceparent", traceparent(TRACE_IDS["v1"])),)
            await PredictionServiceStub(channel).Predict(request, timeout=5, metadata=metadata)
            infer = v2.ModelInferRequest(
                model_name="p",
                inputs=[
                    v2.ModelInferRequest.InferInputTensor(
                        name="amount", datatype="FP32", shape=[1], contents=v2.InferTensorContents(fp32_contents=[1])
                    )
                ],
            )
            metadata = (("traceparent", traceparent(TRACE_IDS["v2"])),)
            await GRPCInferenceServiceStub(channel).ModelInfer(infer, timeout=5, metadata=metadata)
            bad = PredictRequest(predictor="p", rows=[FeatureRow(features={"amunt": 1.0})])
            with pytest.raises(grpc.aio.AioRpcError):
                await PredictionServiceStub(channel).Predict(bad, timeout=5)
        assert await asyncio.to_thread(rest_infer, server.http_port, TRACE_IDS["rest"]) == 200
    spans: list[ReadableSpan] = list(memory.get_finished_spans())
    roots = [s for s in spans if s.name == "sibyl.predict"]
    by_trace = {format(s.context.trace_id, "032x"): s for s in roots}
    for door, trace_id in TRACE_IDS.items():
        root = by_trace[trace_id]  # the caller's trace, whichever door the call came in by
        assert root.parent is not None and format(root.parent.span_id, "016x") == PARENT, door
        children = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
        assert [c.name for c in sorted(children, key=lambda c: c.start_time)] == STAGES, door
        assert all(root.start_time <= c.start_time <= c.end_time <= root.end_time for c in children), door
        assert root.attributes["sibyl.predictor"] == "p" and root.attributes["sibyl.rows"] == 1
    (failed,) = [s for s in roots if format(s.context.trace_id, "032x") not in TRACE_IDS.values()]
    assert failed.status.status_code == StatusCode.ERROR and "amunt" in (failed.status.description or "")
    # The OTLP exporter sent the same spans to the receiver (flushed when the server closed).
    exported = ExportTraceServiceRequest()
    for body in bodies:
        exported.MergeFromString(body)
    names = [s.name for rs in exported.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert names.count("sibyl.predict") == 4 and names.count("infer") == 3
    service = {a.key: a.value.string_value for a in exported.resource_spans[0].resource.attributes}["service.name"]
    assert service == "sibyl"


async def test_tracing_is_off_by_default(store: Path) -> None:
    async with running_server(store) as server:
        assert server.service.tracing is None  # nothing of OpenTelemetry runs: one `is None` test per call
