"""Open Inference Protocol (KServe V2) messages <-> sibyl's PredictRequest / PredictResponse and the service's
answers about models (serving.metadata: ModelInfo, RepositoryEntry, PredictorStats).

How a V2 request maps onto sibyl (docs/protocols.md):
- model_name is a predictor; model_version "" routes as usual, "7" pins the primary model's version 7,
  "model@7" scores any model (a model_override: the predictor's shadows and log still apply); the service
  resolves it (serving.metadata.override), this module only passes it on.
- Input tensors and parameters become a PredictRequest in sibyl.api.v2_inputs (re-exported here), within the
  request's work budget (serving.limits).
- The answer is one FP32 output "score" [N, dim]; raw_output_contents when the request used raw inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from sibyl.api.v2_inputs import NUMPY_TYPES as NUMPY_TYPES  # re-exported: the REST codec's dtypes
from sibyl.api.v2_inputs import to_predict_request as to_predict_request  # the request side, re-exported
from sibyl.api.v2_inputs import to_rows as to_rows
from sibyl.errors import InvalidArgument
from sibyl.kserve.grpc_predict_v2_pb2 import (
    DataType,
    InferParameter,
    InferStatistics,
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
from sibyl.serving.metadata import ModelInfo, PredictorStats, RepositoryEntry
from sibyl.serving.routing import ROLE_NAMES

OUTPUT = "score"
PLATFORM = "onnxruntime_onnx"
INT32_MAX = 2**31 - 1  # max_batch_size is an int32 field


# ---- response
def check_outputs(request: ModelInferRequest) -> None:
    for wanted in request.outputs:
        if wanted.name != OUTPUT:
            raise InvalidArgument(f"output {wanted.name!r} unknown; sibyl answers one output {OUTPUT!r}")


def to_infer_response(answer: Answer, request: ModelInferRequest) -> ModelInferResponse:
    """Raw output contents when the request sent raw inputs, typed contents otherwise."""
    result = answer.scored[0]  # the model that answered (primary, arm or override)
    model = result.model.ref
    parameters = {
        "prediction_id": InferParameter(string_param=answer.prediction_id),
        "model": InferParameter(string_param=model),
        "role": InferParameter(string_param=ROLE_NAMES[result.role]),
    }
    if result.arm:
        parameters["arm"] = InferParameter(string_param=result.arm)
    if answer.defaulted:
        parameters["defaulted"] = InferParameter(string_param=",".join(answer.defaulted))
    scores = result.scores
    output = ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype="FP32", shape=scores.shape)
    out = ModelInferResponse(
        model_name=request.model_name,
        model_version=model,
        id=request.id,
        parameters=parameters,
        outputs=[output],
    )
    if request.raw_input_contents:
        out.raw_output_contents.append(scores.astype("<f4", copy=False).tobytes())
    else:
        out.outputs[0].contents.fp32_contents.extend(scores.ravel().tolist())
    return out


# ---- metadata, config and the repository index
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
