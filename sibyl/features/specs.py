"""Feature specs known to the model store: how the loader encodes a column and how `get` names a field."""

from __future__ import annotations

import json
from pathlib import Path

from sibyl.errors import InvalidArgument, SibylError
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec, Manifest
from sibyl.models.predictor import ModelRef
from sibyl.models.settings import ModelStoreSettings
from sibyl.models.store import open_store


def specs_from_store(ms: ModelStoreSettings) -> dict[str, FeatureSpec]:
    """Entity features of the newest version of every model; {} when the store cannot be read."""
    try:
        catalog = Catalog(open_store(ms.url, ms.s3_endpoint_url, ms.s3_region))
        manifests = [catalog.read_manifest(ModelRef(m, v[-1])) for m, v in catalog.models().items() if v]
    except SibylError:
        return {}
    return {s.name: s for m in manifests for s in m.inputs if s.entity is not None}


def specs_from_manifest(path: str) -> dict[str, FeatureSpec]:
    try:
        manifest = Manifest.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"--manifest {path}: not a readable model manifest ({exc})") from None
    return {s.name: s for s in manifest.inputs}
