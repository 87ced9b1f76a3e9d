"""Model-store settings (SIBYL_MODEL_STORE__*): file:// or s3:// and how often to poll."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

EXAMPLE_STORE = Path(__file__).parent.parent / "examples" / "store"


class ModelStoreSettings(BaseModel):
    url: str = Field(f"file://{EXAMPLE_STORE}", description="file:///path or s3://bucket/prefix.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, SeaweedFS, ...).")
    s3_region: str = Field("us-east-1", description="S3 region name.")
    poll_interval_s: float = Field(5.0, gt=0, description="How often the store is checked for changes.")
    s3_read_timeout_s: float = Field(
        300.0, gt=0, description="Longest one whole s3:// file read may take; slower fails, retried at the next poll."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not (url.startswith("file://") or url.startswith("s3://") or url.startswith("/")):
            raise ValueError("must start with file:// or s3:// (e.g. file:///srv/models, s3://bucket/prefix)")
        return url
