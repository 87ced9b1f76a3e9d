"""Predictor config (predictors/<name>.json: primary, shadows, experiments) and model references."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from sibyl.errors import InvalidArgument
from sibyl.models.manifest import FeatureSpec, ModelKey, check_name


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


SLICE_NAME_RE = r"^[a-z][a-z0-9_]{0,31}$"
MAX_SLICES = 8


class Slice(BaseModel):
    """One way to cut a predictor's rows into groups; every verdict series and drift carry a `slice` label per
    group (docs/observability.md#slices). Exactly one of feature, entity, defaulted. Each kind has a bounded set of
    values, so no input can grow the series without bound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SLICE_NAME_RE, description="Label prefix: the slice label reads name=value.")
    feature: str | None = Field(None, description="A numeric input of the primary: bins by edges, else its values.")
    edges: tuple[float, ...] | None = Field(None, description="Bin edges for feature, ascending: [1, 3, 10].")
    entity: str | None = Field(None, description="An entity id (e.g. store_id): the `top` most frequent, else other.")
    top: int = Field(20, ge=1, le=200, description="Most distinct values labelled one by one (entity, feature).")
    defaulted: str | None = Field(None, description="An input of the primary: whether the row used its default.")

    @model_validator(mode="after")
    def _one_kind(self) -> Slice:
        kinds = [k for k in ("feature", "entity", "defaulted") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"slice {self.name!r} needs exactly one of feature, entity, defaulted (has {kinds})")
        if self.edges is not None:
            if self.feature is None:
                raise ValueError(f"slice {self.name!r}: edges go with a feature")
            if not self.edges or any(not b > a for a, b in itertools.pairwise(self.edges)):
                raise ValueError(f"slice {self.name!r}: edges must be ascending and distinct, e.g. [1, 3, 10]")
            if len(self.edges) > 32 or not all(abs(e) < float("inf") for e in self.edges):
                raise ValueError(f"slice {self.name!r}: at most 32 finite edges")
        return self


def check_slices(slices: list[Slice], inputs: tuple[FeatureSpec, ...] | list[FeatureSpec], primary: str) -> None:
    """InvalidArgument unless every slice names a feature or an entity the primary model takes."""
    features = {spec.name: spec for spec in inputs}
    entities = {spec.entity for spec in inputs if spec.entity}
    for s in slices:
        feature = s.feature or s.defaulted
        if feature is not None and feature not in features:
            raise InvalidArgument(
                f"slice {s.name!r} names feature {feature!r}, which the primary {primary} does not take; "
                f"its inputs: {sorted(features)[:12]}"
            )
        if s.feature is not None and features[s.feature].dim != 1:
            raise InvalidArgument(f"slice {s.name!r}: feature {s.feature!r} is a vector; slice by a scalar input")
        if s.entity is not None and s.entity not in entities:
            raise InvalidArgument(
                f"slice {s.name!r} names entity {s.entity!r}, which no input of the primary {primary} belongs to; "
                f"its entities: {sorted(entities)}"
            )


class RankAgreement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(10_000, ge=100, le=1_000_000, description="Rows per (candidate, slice) in the window.")
    every_s: float = Field(5.0, ge=0.0, le=3600.0, description="Seconds between refreshes of a window's gauge.")


class Gate(BaseModel):
    """What `sibyl models promote --gate` asks of a candidate's evidence on labelled rows (docs/monitoring.md#gate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Literal["auc", "log_loss", "brier"] = Field("auc", description="The quality compared.")
    min_rows: int = Field(1_000, ge=1, description="Labelled rows the candidate needs (slice all); slices with "
                                                    "fewer are not judged.")  # fmt: skip
    max_loss: float = Field(0.0, ge=0.0, description="How much worse than the primary a slice may be.")
    since_s: float = Field(7 * 86_400.0, gt=0, description="The labelled rows of this last span count.")
    required: bool = Field(False, description="Every promote is gated, not only with --gate (--force overrides).")


class PredictorConfig(BaseModel):
    """predictors/<name>.json in the model store."""

    model_config = ConfigDict(extra="forbid")

    name: str
    primary: PinnedRef
    shadows: list[Shadow] = Field(default_factory=list)
    experiments: list[Arm] = Field(default_factory=list)
    unit_key: str = Field("consumer_id", description="Context key whose value assigns a unit to an arm.")
    # Verdicts on live traffic (docs/observability.md#verdicts)
    decision_threshold: float = Field(0.5, description="A row's decision: score >= this (dim 1), else arg-max.")
    alert_agreement: float | None = Field(None, ge=0.0, le=1.0, description="SibylShadowDisagreement below this.")
    positive_rate_shift: float | None = Field(
        None, gt=0.0, description="SibylPositiveRateShift when the last hour's positive rate is off the day's by more."
    )
    slices: list[Slice] = Field(default_factory=list, max_length=MAX_SLICES)
    rank_agreement: RankAgreement = Field(default_factory=RankAgreement)
    gate: Gate | None = None
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
        names = [s.name for s in self.slices]
        if len(set(names)) != len(names) or "all" in names:
            raise ValueError("slice names must be unique and not 'all' (the series of every row)")
        return self

    def model_refs(self) -> set[str]:
        return {self.primary, *(s.model for s in self.shadows), *(a.model for a in self.experiments)}
