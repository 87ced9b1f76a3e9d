"""The routing decision for one request: override, experiment arm (stable per unit) or primary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import xxhash

from sibyl.models.predictor import ModelRef, PredictorConfig
from sibyl.v1.predict_pb2 import Role

ROLE_NAMES = {value: name.removeprefix("ROLE_").lower() for name, value in Role.items()}  # "primary", "shadow"…


def unit_bucket(predictor: str, unit_id: str) -> float:
    """A stable number in [0, 1) per (predictor, unit): one user always lands in the same arm."""
    return xxhash.xxh64_intdigest(f"{predictor}\x00{unit_id}".encode()) / 2**64


@dataclass(frozen=True, slots=True)
class Route:
    model: ModelRef
    role: int  # sibyl.v1.Role
    arm: str = ""


def choose(config: PredictorConfig, context: Mapping[str, str], override: str = "") -> Route:
    """The model that answers for this request: override > experiment arm (by unit id) > primary."""
    if override:
        return Route(ModelRef.parse(override), Role.ROLE_OVERRIDE)
    if config.experiments:
        unit = context.get(config.unit_key)
        if unit:
            bucket, edge = unit_bucket(config.name, unit), 0.0
            for arm in config.experiments:
                edge += arm.traffic
                if bucket < edge:
                    return Route(ModelRef.parse(arm.model), Role.ROLE_EXPERIMENT, arm.name)
    return Route(ModelRef.parse(config.primary), Role.ROLE_PRIMARY)
