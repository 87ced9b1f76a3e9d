"""Predictor config (predictors/<name>.json: primary, shadows, experiments) and model references."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from sibyl.models.manifest import ModelKey, check_name


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: str | None = None  # None: the newest version in the store
    # How the registry files a loaded version; an unversioned ref has version "". A field, not a property: the
    # request path reads it on every call.
    key: ModelKey = field(init=False, repr=False, compare=False)
    # ModelRef.parse('model' or 'model@version'), names checked so they can never escape the store: _parse_ref.
    parse: ClassVar[Callable[[str], ModelRef]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.name, self.version or ""))

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@functools.lru_cache(maxsize=4096)  # the same few refs are parsed on every request: a hit runs no Python
def _parse_ref(text: str) -> ModelRef:
    name, _, version = text.partition("@")
    check_name("model name", name)
    if version:
        check_name("version", version)
    return ModelRef(name, version or None)


ModelRef.parse = _parse_ref


def _pinned(ref: str) -> str:
    parsed = ModelRef.parse(ref)
    if parsed.version is None:
        raise ValueError(f"{ref!r} must name a version: model@version")
    return ref


PinnedRef = Annotated[str, AfterValidator(_pinned)]


class Shadow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: PinnedRef
    sample: float = Field(1.0, ge=0.0, le=1.0, description="Share of requests the shadow scores.")


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: PinnedRef
    traffic: float = Field(gt=0.0, le=1.0, description="Share of units routed to this arm.")


class PredictorConfig(BaseModel):
    """predictors/<name>.json in the model store."""

    model_config = ConfigDict(extra="forbid")

    name: str
    primary: PinnedRef
    shadows: list[Shadow] = Field(default_factory=list)
    experiments: list[Arm] = Field(default_factory=list)
    unit_key: str = Field("consumer_id", description="Context key whose value assigns a unit to an arm.")
    updated_at: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("predictor", v)

    @model_validator(mode="after")
    def _traffic(self) -> PredictorConfig:
        if sum(a.traffic for a in self.experiments) > 1.0 + 1e-9:
            raise ValueError("experiment traffic shares add up to more than 1")
        if len({a.name for a in self.experiments}) != len(self.experiments):
            raise ValueError("experiment arm names must be unique")
        return self

    def model_refs(self) -> set[str]:
        return {self.primary, *(s.model for s in self.shadows), *(a.model for a in self.experiments)}
