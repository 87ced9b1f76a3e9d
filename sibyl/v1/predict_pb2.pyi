from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_PRIMARY: _ClassVar[Role]
    ROLE_SHADOW: _ClassVar[Role]
    ROLE_EXPERIMENT: _ClassVar[Role]
    ROLE_EXTRA: _ClassVar[Role]
    ROLE_OVERRIDE: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_PRIMARY: Role
ROLE_SHADOW: Role
ROLE_EXPERIMENT: Role
ROLE_EXTRA: Role
ROLE_OVERRIDE: Role

class EntityColumn(_message.Message):
    __slots__ = ("entity", "ids")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    entity: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entity: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DenseRows(_message.Message):
    __slots__ = ("feature_names", "values", "num_rows")
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    values: bytes
    num_rows: int
    def __init__(self, feature_names: _Optional[_Iterable[str]] = ..., values: _Optional[bytes] = ..., num_rows: _Optional[int] = ...) -> None: ...

class FloatVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class FeatureRow(_message.Message):
    __slots__ = ("features", "vectors", "entities")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class VectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FloatVector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FloatVector, _Mapping]] = ...) -> None: ...
    class EntitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.ScalarMap[str, float]
    vectors: _containers.MessageMap[str, FloatVector]
    entities: _containers.ScalarMap[str, str]
    def __init__(self, features: _Optional[_Mapping[str, float]] = ..., vectors: _Optional[_Mapping[str, FloatVector]] = ..., entities: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("request_id", "predictor", "context", "rows", "dense", "row_entities", "extra_models", "model_override")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTOR_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    ROW_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    EXTRA_MODELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    predictor: str
    context: _containers.ScalarMap[str, str]
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    dense: DenseRows
    row_entities: _containers.RepeatedCompositeFieldContainer[EntityColumn]
    extra_models: _containers.RepeatedScalarFieldContainer[str]
    model_override: str
    def __init__(self, request_id: _Optional[str] = ..., predictor: _Optional[str] = ..., context: _Optional[_Mapping[str, str]] = ..., rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ..., dense: _Optional[_Union[DenseRows, _Mapping]] = ..., row_entities: _Optional[_Iterable[_Union[EntityColumn, _Mapping]]] = ..., extra_models: _Optional[_Iterable[str]] = ..., model_override: _Optional[str] = ...) -> None: ...

class ModelScores(_message.Message):
    __slots__ = ("model", "version", "role", "arm", "dim", "scores")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    role: Role
    arm: str
    dim: int
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., arm: _Optional[str] = ..., dim: _Optional[int] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class DefaultedFeature(_message.Message):
    __slots__ = ("feature", "rows")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    feature: str
    rows: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, feature: _Optional[str] = ..., rows: _Optional[_Iterable[int]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction_id", "request_id", "predictor", "results", "defaulted", "num_rows")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTOR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    request_id: str
    predictor: str
    results: _containers.RepeatedCompositeFieldContainer[ModelScores]
    defaulted: _containers.RepeatedCompositeFieldContainer[DefaultedFeature]
    num_rows: int
    def __init__(self, prediction_id: _Optional[str] = ..., request_id: _Optional[str] = ..., predictor: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ModelScores, _Mapping]]] = ..., defaulted: _Optional[_Iterable[_Union[DefaultedFeature, _Mapping]]] = ..., num_rows: _Optional[int] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("request_id", "response", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    response: PredictResponse
    error: Status
    def __init__(self, request_id: _Optional[str] = ..., response: _Optional[_Union[PredictResponse, _Mapping]] = ..., error: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "code_name", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    code_name: str
    message: str
    def __init__(self, code: _Optional[int] = ..., code_name: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
