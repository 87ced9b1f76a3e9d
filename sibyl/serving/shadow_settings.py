"""Shadow settings (SIBYL_SHADOWS__*): the bounded queue and when shadows are shed."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ShadowSettings(BaseModel):
    queue_size: int = Field(1_000, ge=1, description="Shadow jobs waiting; more are shed and counted.")
    concurrency: int = Field(2, ge=1, description="Shadow jobs running at once.")
    max_in_flight_fraction: float = Field(
        0.8, gt=0, le=1, description="Shed shadows when in-flight calls exceed this share of max_in_flight."
    )
