from sibyl.v1 import predict_pb2 as _predict_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionLog(_message.Message):
    __slots__ = ("prediction_id", "request_id", "predictor", "model", "version", "role", "arm", "sent_at_unix_nanos", "num_rows", "feature_names", "feature_values", "defaulted", "score_dim", "scores", "latency_ms", "context", "row_entities", "host", "trimmed")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VALUES_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FIELD_NUMBER: _ClassVar[int]
    SCORE_DIM_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ROW_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TRIMMED_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    request_id: str
    predictor: str
    model: str
    version: str
    role: _predict_pb2.Role
    arm: str
    sent_at_unix_nanos: int
    num_rows: int
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    feature_values: _containers.RepeatedScalarFieldContainer[float]
    defaulted: _containers.RepeatedCompositeFieldContainer[_predict_pb2.DefaultedFeature]
    score_dim: int
    scores: _containers.RepeatedScalarFieldContainer[float]
    latency_ms: float
    context: _containers.ScalarMap[str, str]
    row_entities: _containers.RepeatedCompositeFieldContainer[_predict_pb2.EntityColumn]
    host: str
    trimmed: bool
    def __init__(self, prediction_id: _Optional[str] = ..., request_id: _Optional[str] = ..., predictor: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., role: _Optional[_Union[_predict_pb2.Role, str]] = ..., arm: _Optional[str] = ..., sent_at_unix_nanos: _Optional[int] = ..., num_rows: _Optional[int] = ..., feature_names: _Optional[_Iterable[str]] = ..., feature_values: _Optional[_Iterable[float]] = ..., defaulted: _Optional[_Iterable[_Union[_predict_pb2.DefaultedFeature, _Mapping]]] = ..., score_dim: _Optional[int] = ..., scores: _Optional[_Iterable[float]] = ..., latency_ms: _Optional[float] = ..., context: _Optional[_Mapping[str, str]] = ..., row_entities: _Optional[_Iterable[_Union[_predict_pb2.EntityColumn, _Mapping]]] = ..., host: _Optional[str] = ..., trimmed: _Optional[bool] = ...) -> None: ...
