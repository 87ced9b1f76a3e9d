"""The model manifest: what a model version needs as input, what it outputs, and how to verify it.

Stored beside the model as models/<model>/<version>/manifest.json. Columns of the model's single 2-D
float32 input tensor follow `inputs` in order; a vector feature of dim D takes D columns named
"name[0]" .. "name[D-1]".
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sibyl.errors import InvalidArgument

ModelKey = tuple[str, str]  # (model, version): how a loaded version is filed
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_name(kind: str, name: str) -> str:
    """Model names, versions, predictors: safe as path parts (no '/', '..', spaces)."""
    if not NAME_RE.match(name) or ".." in name:
        raise InvalidArgument(f"{kind} {name!r} must be 1-128 of letters, digits, '_', '.', '-' (no '..')")
    return name


class FeatureSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    entity: str | None = Field(None, description="Entity the feature belongs to, e.g. consumer_id.")
    dtype: Literal["float", "float_vector", "int_list"] = "float"
    dim: int = Field(1, ge=1, description="Width: 1 for float, the length for vectors and int lists.")
    default: float | tuple[float, ...] = 0.0

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if self.dtype == "float" and self.dim != 1:
            raise ValueError(f"feature {self.name}: a float feature has dim 1")
        if isinstance(self.default, tuple) and len(self.default) != self.dim:
            raise ValueError(f"feature {self.name}: default has {len(self.default)} values, dim is {self.dim}")
        return self

    @property
    def columns(self) -> list[str]:
        return [self.name] if self.dtype == "float" else [f"{self.name}[{i}]" for i in range(self.dim)]

    @property
    def default_values(self) -> tuple[float, ...]:
        return self.default if isinstance(self.default, tuple) else (float(self.default),) * self.dim


class OutputSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="ONNX output tensor to read scores from.")
    column: int | None = Field(None, description="Keep one column of a 2-D output (e.g. 1 = P(class 1)).")


class Histogram(BaseModel):
    """Fixed-bin histogram for drift: edges has len(counts) + 1 entries."""

    edges: list[float]
    counts: list[float]

    @model_validator(mode="after")
    def _check(self) -> Histogram:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("histogram edges must have one more entry than counts")
        return self


class Baselines(BaseModel):
    features: dict[str, Histogram] = Field(default_factory=dict)
    prediction: Histogram | None = None


class Validation(BaseModel):
    """What `models publish` checked the version with: a later `models validate` repeats the check."""

    onnxruntime: str = Field(description="onnxruntime version that loaded and scored the model at publish.")
    opsets: dict[str, int] = Field(description="Operator sets the model imports: domain ('' = ai.onnx) -> version.")
    ir_version: int = Field(description="ONNX IR version of the file.")
    producer: str = Field("", description="Tool that wrote the ONNX file, e.g. 'skl2onnx 1.20.0'.")
    sample_rows: int = Field(0, ge=0, description="Sample rows scored at publish (0: the defaults row only).")
    check_file: str | None = Field(None, description="File beside model.onnx with rows and the scores they gave.")


class Source(BaseModel):
    """The trained model a version was converted from (`models publish --sklearn/--xgboost/--lightgbm`)."""

    format: Literal["sklearn", "xgboost", "lightgbm"]
    file: str = Field(description="The original file, stored beside model.onnx.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    library: str = Field(description="Library and version that loaded it, e.g. 'xgboost 3.2.0'.")
    converter: str = Field(description="Converter and version, e.g. 'onnxmltools 1.16.0'.")
    tolerance: float = Field(description="Largest allowed |onnx - original| per score (plus the same, relative).")
    max_abs_diff: float = Field(description="Largest |onnx - original| seen on the sample.")
    rows_checked: int = Field(ge=1)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    format: Literal["onnx"] = "onnx"
    input_name: str = Field(description="Name of the ONNX model's float32 [N, columns] input.")
    inputs: list[FeatureSpec]
    output: OutputSpec
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="Training metadata (free form).")
    baselines: Baselines | None = None
    validation: Validation | None = Field(None, description="Set by publish (absent on older versions).")
    source: Source | None = Field(None, description="Set when publish converted a trained model.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("model name", v)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return check_name("version", v)

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        names = [f.name for f in self.inputs]
        if len(set(names)) != len(names) or not names:
            raise ValueError("inputs must be a non-empty list of uniquely named features")
        return self

    @cached_property
    def columns(self) -> list[str]:
        return [c for f in self.inputs for c in f.columns]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def key(self) -> ModelKey:
        return (self.name, self.version)
