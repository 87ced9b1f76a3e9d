"""The Open Inference Protocol (KServe V2) protobuf messages <-> sibyl: a ModelInferRequest as an InferCall
(api.v2.tensors decodes it), an Answer as a ModelInferResponse, and the service's answers about models
(serving.metadata: ModelInfo, RepositoryEntry, PredictorStats) as the metadata, config, index and statistics
messages (the REST port writes these as Triton's JSON: api.rest.codec.triton_json).

How a V2 request maps onto sibyl (docs/protocols.md):
- model_name is a predictor; model_version "" routes as usual, "7" pins the primary model's version 7,
  "model@7" scores any model (a model_override: the predictor's shadows and log still apply); the service
  resolves it (serving.metadata.override), this module only passes it on.
- The answer is one FP32 output "score" [N, dim]; raw_output_contents when the request used raw inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sibyl.api.v2.infer import OUTPUT
from sibyl.api.v2.tensors import NUMPY_TYPES, InferCall, InputTensor, Parameter, RawContents, utf8
from sibyl.errors import InvalidArgument
from sibyl.kserve.grpc_predict_v2_pb2 import (
    DataType,
    InferParameter,
    InferStatistics,
    InferTensorContents,
    ModelConfig,
    ModelInferRequest,
    ModelInferResponse,
    ModelInput,
    ModelMetadataResponse,
    ModelOutput,
    ModelStatistics,
    ModelStatisticsResponse,
    RepositoryIndexResponse,
    StatisticDuration,
)
from sibyl.serving.answer import Answer
from sibyl.serving.limits import Limits
from sibyl.serving.metadata import ModelInfo, PredictorStats, RepositoryEntry

PLATFORM = "onnxruntime_onnx"
INT32_MAX = 2**31 - 1  # max_batch_size is an int32 field
TYPED_FIELDS = {  # datatype -> InferTensorContents field (the spec has none for FP16/BF16)
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


# ---- inference
def infer_call(request: ModelInferRequest, limits: Limits) -> InferCall:
    """The request as api.v2.tensors reads it; the counts it declares are checked before anything is built
    per input or parameter."""
    inputs, raw = request.inputs, request.raw_input_contents
    limits.columns(len(inputs), "input tensors")
    if inputs and len(raw) and len(raw) != len(inputs):
        raise InvalidArgument(f"{len(raw)} raw_input_contents for {len(inputs)} inputs; give one per input")
    limits.columns(len(request.parameters), "request parameters")
    tensors = [
        InputTensor(t.name, t.datatype, t.shape, _contents(t.contents, raw[i] if len(raw) else None))
        for i, t in enumerate(inputs)
    ]
    parameters: dict[str, Parameter] = {}
    for key, value in request.parameters.items():
        kind = value.WhichOneof("parameter_choice")
        if kind is not None:
            parameters[key] = getattr(value, kind)
    return InferCall(
        request.model_name,
        request.model_version,
        request.id,
        tensors,
        parameters,
        [wanted.name for wanted in request.outputs],
        raw_output=bool(len(raw)),
    )


def _contents(typed: InferTensorContents, raw: bytes | None) -> RawContents | TypedContents | _Both:
    if raw is None:
        return TypedContents(typed)
    return _Both() if typed.ListFields() else RawContents(raw)


@dataclass(frozen=True, slots=True)
class TypedContents:
    """A tensor's values in the InferTensorContents field of its datatype."""

    contents: InferTensorContents

    def check(self, name: str, datatype: str, count: int, shape: list[int]) -> None:
        field = TYPED_FIELDS.get(datatype)
        if field is None:
            raise InvalidArgument(f"input {name!r}: {datatype} has no typed contents field; send it as raw contents")
        other = [f.name for f, _ in self.contents.ListFields() if f.name != field]
        if other:
            raise InvalidArgument(f"input {name!r}: contents.{other[0]} is set for a {datatype} tensor; use {field}")
        given = len(getattr(self.contents, field))
        if given != count:
            what = "entity ids" if datatype == "BYTES" else "input"
            raise InvalidArgument(f"{what} {name!r}: {given} values in contents.{field}, shape {shape} needs {count}")

    def numbers(self, name: str, datatype: str, count: int, shape: list[int]) -> np.ndarray:
        dtype = NUMPY_TYPES[datatype]
        values = np.asarray(getattr(self.contents, TYPED_FIELDS[datatype]))  # the field's own type, no copy loop
        if values.dtype != dtype and dtype.kind in "iu" and values.size:  # a wider field (int_contents for INT8)
            info = np.iinfo(dtype)
            low, high = int(values.min()), int(values.max())
            if low < info.min or high > info.max:
                bad = low if low < info.min else high
                raise InvalidArgument(f"input {name!r}: value {bad} is out of range for {datatype}")
        return values

    def ids(self, name: str, count: int, shape: list[int]) -> list[str]:
        return utf8(name, self.contents.bytes_contents)


class _Both:
    """Typed contents and raw_input_contents for one tensor."""

    __slots__ = ()

    def check(self, name: str, datatype: str, count: int, shape: list[int]) -> None:
        raise InvalidArgument(f"input {name!r}: both contents and raw_input_contents are set; send one")

    def numbers(self, name: str, datatype: str, count: int, shape: list[int]) -> np.ndarray:
        raise AssertionError("refused by check")

    def ids(self, name: str, count: int, shape: list[int]) -> list[str]:
        raise AssertionError("refused by check")


def infer_response(answer: Answer, call: InferCall, parameters: dict[str, str]) -> ModelInferResponse:
    """Raw output contents when the request sent raw inputs, typed contents otherwise; parameters: the
    response's (api.v2.infer.answer_parameters)."""
    scores = answer.scored[0].scores  # the model that answered (primary, arm or override)
    output = ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype="FP32", shape=scores.shape)
    out = ModelInferResponse(
        model_name=call.model,
        model_version=answer.scored[0].model.ref,
        id=call.id,
        parameters={key: InferParameter(string_param=value) for key, value in parameters.items()},
        outputs=[output],
    )
    if call.raw_output:
        out.raw_output_contents.append(scores.astype("<f4", copy=False).tobytes())
    else:
        out.outputs[0].contents.fp32_contents.extend(scores.reshape(-1).tolist())  # no copy that gives up the GIL
    return out


# ---- metadata, config, the repository index and statistics
def model_metadata(info: ModelInfo, versions: Sequence[str]) -> ModelMetadataResponse:
    """One input, as Triton lists an ONNX model: the model's whole-row tensor (its ONNX input, FP32
    [-1, columns] in manifest column order). Clients that send every listed input (perf_analyzer, generated
    clients) then send one tensor per call. Per-feature tensors and BYTES entity ids are still accepted
    (docs/protocols.md) but not listed: such a client would send them all, beside the whole row."""
    meta = ModelMetadataResponse.TensorMetadata
    return ModelMetadataResponse(
        name=info.predictor,
        versions=list(versions),
        platform=PLATFORM,
        inputs=[meta(name=info.input_name, datatype="FP32", shape=[-1, len(info.columns)])],
        outputs=[meta(name=OUTPUT, datatype="FP32", shape=[-1, info.dim])],
    )


def model_config(info: ModelInfo, max_rows: int) -> ModelConfig:
    """Triton's view: a batching model (dims without the batch dimension) with the one whole-row input."""
    return ModelConfig(
        name=info.predictor,
        platform=PLATFORM,
        backend="sibyl",
        max_batch_size=min(max_rows, INT32_MAX),
        input=[ModelInput(name=info.input_name, data_type=DataType.TYPE_FP32, dims=[len(info.columns)])],
        output=[ModelOutput(name=OUTPUT, data_type=DataType.TYPE_FP32, dims=[info.dim])],
    )


def repository_index(entries: Sequence[RepositoryEntry]) -> RepositoryIndexResponse:
    """Predictors are the V2 models; version is the primary that answers them."""
    index = RepositoryIndexResponse.ModelIndex
    return RepositoryIndexResponse(
        models=[
            index(name=e.predictor, version=e.version, state="READY")
            if e.ready
            else index(name=e.predictor, state="UNAVAILABLE", reason=e.reason)
            for e in entries
        ]
    )


def model_statistics(stats: Sequence[PredictorStats]) -> ModelStatisticsResponse:
    duration = StatisticDuration
    return ModelStatisticsResponse(
        model_stats=[
            ModelStatistics(
                name=p.predictor,
                version=p.version,
                last_inference=p.stats.last_ms,
                inference_count=p.stats.rows,
                execution_count=p.stats.calls,
                inference_stats=InferStatistics(
                    success=duration(count=p.stats.ok, ns=p.stats.ok_ns),
                    fail=duration(count=p.stats.failed, ns=p.stats.failed_ns),
                ),
            )
            for p in stats
        ]
    )
