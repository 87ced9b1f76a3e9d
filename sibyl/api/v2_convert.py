"""Open Inference Protocol (KServe V2) messages <-> sibyl's PredictRequest / PredictResponse and the service's
answers about models (serving.metadata: ModelInfo, RepositoryEntry, PredictorStats).

How a V2 request maps onto sibyl (docs/protocols.md):
- model_name is a predictor; model_version "" routes as usual, "7" pins the primary model's version 7,
  "model@7" scores any model (a model_override: the predictor's shadows and log still apply); the service
  resolves it (serving.metadata.override), this module only passes it on.
- A numeric input tensor [N] or [N, k] is a feature (k > 1: a vector, columns "name[0]".."name[k-1]");
  the tensor named after the model's ONNX input ([N, columns]) gives every column at once.
- A BYTES input tensor [N] is a column of entity ids (e.g. consumer_id) for the feature store.
- String / integer request parameters are entity ids shared by all rows (the request context).
- The answer is one FP32 output "score" [N, dim]; raw_output_contents when the request used raw inputs.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np

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
from sibyl.models.predictor import ModelRef
from sibyl.serving.metadata import ModelInfo, PredictorStats, RepositoryEntry
from sibyl.serving.routing import ROLE_NAMES
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest, PredictResponse

OUTPUT = "score"
PLATFORM = "onnxruntime_onnx"
INT32_MAX = 2**31 - 1  # max_batch_size is an int32 field
# Request parameters V2/Triton clients send for their own purposes: never entity ids.
RESERVED_PARAMETERS = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output", "headers"}
)
NUMPY_TYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
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


# ---- request
def to_predict_request(
    request: ModelInferRequest, model_override: str = "", matrix_inputs: Mapping[str, Sequence[str]] | None = None
) -> PredictRequest:
    """model_override: what the request's model_version implies (serving.metadata.override);
    matrix_inputs: tensor name -> the columns it carries as [N, len(columns)] (the model's ONNX input)."""
    if not request.inputs:
        raise InvalidArgument(
            "ModelInferRequest has no inputs: send feature tensors (FP32/INT64) or entity ids (BYTES)"
        )
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; give one per input")
    matrix_inputs = matrix_inputs or {}
    names: list[str] = []
    blocks: list[np.ndarray] = []
    entities: list[EntityColumn] = []
    num_rows: int | None = None
    for i, tensor in enumerate(request.inputs):
        shape = [int(d) for d in tensor.shape]
        if not shape or any(d < 0 for d in shape):
            raise InvalidArgument(f"input {tensor.name!r}: shape {shape} must be [N] or [N, k] with N, k >= 0")
        if len(shape) > 2:
            raise InvalidArgument(
                f"input {tensor.name!r}: shape {shape} has {len(shape)} dims; sibyl takes [N] or [N, k]"
            )
        if num_rows is None:
            num_rows = shape[0]
        elif shape[0] != num_rows:
            raise InvalidArgument(f"input {tensor.name!r} has {shape[0]} rows, earlier inputs {num_rows}")
        payload = raw[i] if raw else None
        if tensor.datatype == "BYTES":
            if len(shape) == 2 and shape[1] != 1:
                raise InvalidArgument(f"entity ids {tensor.name!r}: shape {shape}; send one id per row, [N] or [N, 1]")
            entities.append(EntityColumn(entity=tensor.name, ids=_strings(tensor.name, tensor, payload, shape[0])))
            continue
        values = _numbers(tensor.name, tensor.datatype, tensor.contents, payload, shape)
        width = 1 if len(shape) == 1 else shape[1]
        columns = matrix_inputs.get(tensor.name)
        if columns is not None and tensor.name not in names:
            if width != len(columns):
                raise InvalidArgument(f"input {tensor.name!r}: {width} columns, the model takes {len(columns)}")
            names.extend(columns)
        elif width == 1:
            names.append(tensor.name)
        else:
            names.extend(f"{tensor.name}[{j}]" for j in range(width))
        blocks.append(values.reshape(shape[0], width))
    rows = num_rows or 0
    matrix = np.hstack(blocks) if blocks else np.empty((rows, 0), np.float32)
    return PredictRequest(
        request_id=request.id,
        predictor=request.model_name,
        context=_context(request.parameters),
        dense=DenseRows(feature_names=names, values=np.ascontiguousarray(matrix, "<f4").tobytes(), num_rows=rows),
        row_entities=entities,
        model_override=model_override,
    )


def _numbers(
    name: str, datatype: str, contents: InferTensorContents, payload: bytes | None, shape: list[int]
) -> np.ndarray:
    count = int(np.prod(shape))
    dtype = NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise InvalidArgument(f"input {name!r}: datatype {datatype!r} not supported; use FP32, INT64 or BYTES")
    if payload is not None:
        if len(payload) != count * dtype.itemsize:
            raise InvalidArgument(
                f"input {name!r}: raw contents has {len(payload)} bytes; shape {shape} of {datatype} needs "
                f"{count * dtype.itemsize}"
            )
        values = np.frombuffer(payload, dtype=dtype)
    else:
        field = TYPED_FIELDS.get(datatype)
        if field is None:
            raise InvalidArgument(f"input {name!r}: {datatype} has no typed contents field; send it as raw contents")
        values = np.asarray(getattr(contents, field), dtype=dtype)
        if values.size != count:
            raise InvalidArgument(
                f"input {name!r}: {values.size} values in contents.{field}, shape {shape} needs {count}"
            )
    out = values.astype(np.float32)
    if np.isinf(out).any() and not np.isinf(values).any():
        raise InvalidArgument(f"input {name!r}: a value is too large for float32")
    return out


def _strings(name: str, tensor: ModelInferRequest.InferInputTensor, payload: bytes | None, count: int) -> list[str]:
    items = list(tensor.contents.bytes_contents) if payload is None else _split_raw_bytes(name, payload)
    if len(items) != count:
        raise InvalidArgument(f"entity ids {name!r}: {len(items)} elements for {count} rows")
    try:
        return [item.decode() for item in items]
    except UnicodeDecodeError:
        raise InvalidArgument(f"entity ids {name!r}: not UTF-8 text") from None


def _split_raw_bytes(name: str, payload: bytes) -> list[bytes]:
    """BYTES raw contents: each element a 4-byte little-endian length, then that many bytes."""
    items, offset, end = [], 0, len(payload)
    while offset < end:
        if offset + 4 > end:
            raise InvalidArgument(f"entity ids {name!r}: raw contents end inside a length prefix")
        (length,) = struct.unpack_from("<I", payload, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgument(f"entity ids {name!r}: an element of {length} bytes runs past the end")
        items.append(payload[offset : offset + length])
        offset += length
    return items


def _context(parameters: Mapping[str, InferParameter]) -> dict[str, str]:
    context = {}
    for key, value in parameters.items():
        if key in RESERVED_PARAMETERS or key.startswith("triton_"):
            continue
        kind = value.WhichOneof("parameter_choice")
        if kind == "string_param":
            context[key] = value.string_param
        elif kind in ("int64_param", "uint64_param"):
            context[key] = str(getattr(value, kind))
    return context


# ---- response
def check_outputs(request: ModelInferRequest) -> None:
    for wanted in request.outputs:
        if wanted.name != OUTPUT:
            raise InvalidArgument(f"output {wanted.name!r} unknown; sibyl answers one output {OUTPUT!r}")


def to_infer_response(response: PredictResponse, request: ModelInferRequest) -> ModelInferResponse:
    """Raw output contents when the request sent raw inputs, typed contents otherwise."""
    result = response.results[0]  # the model that answered (primary, arm or override)
    scores = np.asarray(result.scores, dtype="<f4")
    model = str(ModelRef(result.model, result.version))
    parameters = {
        "prediction_id": InferParameter(string_param=response.prediction_id),
        "model": InferParameter(string_param=model),
        "role": InferParameter(string_param=ROLE_NAMES[result.role]),
    }
    if result.arm:
        parameters["arm"] = InferParameter(string_param=result.arm)
    if response.defaulted:
        parameters["defaulted"] = InferParameter(string_param=",".join(d.feature for d in response.defaulted))
    output = ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype="FP32", shape=[response.num_rows, result.dim])
    out = ModelInferResponse(
        model_name=request.model_name,
        model_version=model,
        id=request.id,
        parameters=parameters,
        outputs=[output],
    )
    if request.raw_input_contents:
        out.raw_output_contents.append(scores.tobytes())
    else:
        out.outputs[0].contents.fp32_contents.extend(result.scores)
    return out


# ---- metadata, config and the repository index
def model_metadata(info: ModelInfo, versions: Sequence[str]) -> ModelMetadataResponse:
    meta = ModelMetadataResponse.TensorMetadata
    inputs = [meta(name=name, datatype="FP32", shape=[-1, dim]) for name, dim in info.features]
    inputs += [meta(name=e, datatype="BYTES", shape=[-1, 1]) for e in info.entities]
    return ModelMetadataResponse(
        name=info.predictor,
        versions=list(versions),
        platform=PLATFORM,
        inputs=inputs,
        outputs=[meta(name=OUTPUT, datatype="FP32", shape=[-1, info.dim])],
    )


def model_config(info: ModelInfo, max_rows: int) -> ModelConfig:
    """Triton's view: a batching model (dims without the batch dimension); every input optional."""
    inputs = [
        ModelInput(name=name, data_type=DataType.TYPE_FP32, dims=[dim], optional=True) for name, dim in info.features
    ]
    inputs += [ModelInput(name=e, data_type=DataType.TYPE_STRING, dims=[1], optional=True) for e in info.entities]
    return ModelConfig(
        name=info.predictor,
        platform=PLATFORM,
        backend="sibyl",
        max_batch_size=min(max_rows, INT32_MAX),
        input=inputs,
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
