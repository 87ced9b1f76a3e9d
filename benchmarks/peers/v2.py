"""KServe V2 / Open Inference Protocol pieces the peers share: build a ModelInferRequest once as bytes (stock
tritonclient.grpc, benchmarks.load.workload), read scores back from a ModelInferResponse, wait for a model to
be ready, and read a model's answered-call count (ModelStatistics).

sibyl's generated `inference.*` messages keep the published package and field numbers, so responses from
MLServer, Triton and sibyl's own V2 endpoint all parse with them.
"""

from __future__ import annotations

import time

import grpc
import numpy as np

from benchmarks.load.workload import v2_infer_request
from sibyl.kserve.grpc_predict_v2_pb2 import (
    ModelInferResponse,
    ModelReadyRequest,
    ModelReadyResponse,
    ModelStatisticsRequest,
    ModelStatisticsResponse,
)

SERVICE = "/inference.GRPCInferenceService"
MODEL_INFER = f"{SERVICE}/ModelInfer"
MODEL_READY = f"{SERVICE}/ModelReady"
MODEL_STATISTICS = f"{SERVICE}/ModelStatistics"
TYPED = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents"}
RAW_DTYPE = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4"}


class PeerError(RuntimeError):
    """A peer answered something we cannot read as scores, or never became ready."""


def infer_request(model: str, input_name: str, matrix: np.ndarray) -> bytes:
    """ModelInferRequest bytes as tritonclient.grpc sends them: one FP32 [rows, columns] tensor, raw contents."""
    return v2_infer_request(model, input_name, matrix)


def output_array(raw: bytes, name: str) -> np.ndarray:
    """The named output of a ModelInferResponse as an array of its declared shape (raw or typed contents)."""
    resp = ModelInferResponse.FromString(raw)
    names = [o.name for o in resp.outputs]
    if name not in names:
        raise PeerError(f"response has no output {name!r} (outputs: {names})")
    i = names.index(name)
    out = resp.outputs[i]
    if out.datatype not in RAW_DTYPE:
        raise PeerError(f"output {name!r} is {out.datatype}; expected one of {sorted(RAW_DTYPE)}")
    if resp.raw_output_contents:
        values = np.frombuffer(resp.raw_output_contents[i], dtype=RAW_DTYPE[out.datatype])
    else:
        values = np.asarray(getattr(out.contents, TYPED[out.datatype]), dtype=RAW_DTYPE[out.datatype])
    shape = tuple(int(d) for d in out.shape)
    if int(np.prod(shape)) != values.size:
        raise PeerError(f"output {name!r} has {values.size} values for shape {list(shape)}")
    return values.reshape(shape)


def scores(raw: bytes, name: str, column: int | None) -> np.ndarray:
    """One score per row: `column` of a [rows, k] output (e.g. the positive class), or the output itself."""
    arr = output_array(raw, name)
    if column is None or arr.ndim == 1:
        return arr.reshape(-1).astype(np.float64)
    if arr.ndim != 2 or column >= arr.shape[1]:
        raise PeerError(f"output {name!r} shape {list(arr.shape)} has no column {column}")
    return arr[:, column].astype(np.float64)


def wait_model_ready(target: str, model: str, timeout_s: float, alive: object = None) -> None:
    """Poll ModelReady until true (a peer's port may open before its model is loaded). Bounded by timeout_s.

    alive: optional callable returning False once the server process has died (stop waiting early).
    """
    payload = ModelReadyRequest(name=model).SerializeToString()
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(MODEL_READY)
        while time.monotonic() < deadline:
            if callable(alive) and not alive():
                raise PeerError(f"{target}: server exited while loading {model!r}")
            try:
                if ModelReadyResponse.FromString(call(payload, timeout=1.0)).ready:
                    return
                last = "not ready"
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
            time.sleep(0.1)
    raise PeerError(f"{target}: model {model!r} not ready after {timeout_s:.0f} s (last: {last})")


def infer_once(target: str, payload: bytes, timeout_s: float = 10.0) -> bytes:
    with grpc.insecure_channel(target) as channel:
        return channel.unary_unary(MODEL_INFER)(payload, timeout=timeout_s)


def answered_calls(target: str, model: str) -> int:
    """Successful inference requests the server has counted for `model` (V2 ModelStatistics success.count)."""
    with grpc.insecure_channel(target) as channel:
        raw = channel.unary_unary(MODEL_STATISTICS)(ModelStatisticsRequest(name=model).SerializeToString(), timeout=5)
    stats = ModelStatisticsResponse.FromString(raw).model_stats
    return sum(int(s.inference_stats.success.count) for s in stats)
