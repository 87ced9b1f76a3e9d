"""The model store layout, on any BlobStore:

    models/<model>/<version>/model.onnx
    models/<model>/<version>/manifest.json
    models/<model>/<version>/check.json, source.*   (rows and scores publish checked; a converted model's original)
    predictors/<predictor>.json
    audit/<predictor>/<UTC timestamp>-<action>.json   (one record per promote/rollback/shadow/experiment)

Versions are immutable once published: publish refuses to overwrite, so a cached version never goes stale.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from sibyl.errors import FailedPrecondition, InvalidArgument, ModelStoreError, NotFound
from sibyl.models.manifest import Baselines, FeatureSpec, Manifest, OutputSpec, Source, Validation, check_name
from sibyl.models.predictor import Arm, ModelRef, PredictorConfig, Shadow, check_slices
from sibyl.models.store import BlobStore


def _version_file(model: str, version: str | None, file: str) -> str:
    """models/<model>/<version>/<file>: the one spelling of a version's place in the store."""
    return f"models/{model}/{version}/{file}"


def _complete_versions(keys: list[str]) -> list[tuple[str, str]]:
    """(model, version) of every version folder among store keys that holds both manifest.json and model.onnx."""
    files: dict[tuple[str, str], set[str]] = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == "models":
            files.setdefault((parts[1], parts[2]), set()).add(parts[3])
    return [mv for mv, names in files.items() if {"manifest.json", "model.onnx"} <= names]


def version_key(version: str) -> tuple[Any, ...]:
    """Natural order: 2 < 10, v2 < v10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return os.environ.get("SIBYL_ACTOR") or f"{user}@{socket.gethostname()}"


class AuditRecord(BaseModel):
    at: str
    actor: str
    action: str  # promote | rollback | shadow | unshadow | experiment | end-experiment
    predictor: str
    from_primary: str | None
    to_primary: str | None
    detail: dict[str, Any] = {}


def primaries(history: Sequence[AuditRecord]) -> list[str]:
    """The stack of primaries the audit history leaves, oldest first: a promote pushes, a rollback pops."""
    stack: list[str] = []
    for record in history:
        if record.to_primary is None or record.from_primary == record.to_primary:
            continue  # shadow and experiment changes leave the primary alone
        if not stack and record.from_primary:  # a predictor written by hand, then promoted: it served first
            stack.append(record.from_primary)
        if record.action == "rollback" and stack and stack[-1] == record.from_primary:
            stack.pop()
        if not stack or stack[-1] != record.to_primary:
            stack.append(record.to_primary)
    return stack


class Catalog:
    def __init__(self, store: BlobStore) -> None:
        self.store = store

    # ---- models
    def models(self) -> dict[str, list[str]]:
        """{model: [versions, oldest first]} for every complete version (manifest and model file)."""
        found: dict[str, list[str]] = {}
        for model, version in _complete_versions(self.store.list("models")):
            found.setdefault(model, []).append(version)
        return {m: sorted(v, key=version_key) for m, v in sorted(found.items())}

    def versions(self, model: str) -> list[str]:
        """Complete versions, oldest first. One uploaded manifest-first (as `aws s3 sync` does) counts once its
        model.onnx is there too, so "the newest version" never names one still being uploaded."""
        check_name("model name", model)
        versions = [v for m, v in _complete_versions(self.store.list(f"models/{model}")) if m == model]
        return sorted(versions, key=version_key)

    def resolve(self, ref: ModelRef) -> ModelRef:
        """Pin 'model' to its newest version."""
        if ref.version:
            return ref
        versions = self.versions(ref.name)
        if not versions:
            raise NotFound(f"model {ref.name!r} has no published version in {self.store.url}")
        return ModelRef(ref.name, versions[-1])

    def manifest_tag(self, ref: ModelRef) -> str | None:
        return self.store.tag(_version_file(ref.name, ref.version, "manifest.json"))

    def model_tag(self, ref: ModelRef) -> str | None:
        return self.store.tag(_version_file(ref.name, ref.version, "model.onnx"))

    def read_manifest(self, ref: ModelRef) -> Manifest:
        try:
            raw = self.store.read(_version_file(ref.name, ref.version, "manifest.json"))
        except NotFound:
            raise NotFound(f"model {ref} not found in {self.store.url}") from None
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValidationError as exc:
            raise ModelStoreError(f"manifest of {ref} is invalid: {exc.errors()[0]['msg']}") from None
        if manifest.key != ref.key:
            raise ModelStoreError(f"manifest at {ref} says it is {manifest.ref}")
        return manifest

    def read_model(self, ref: ModelRef) -> bytes:
        try:
            return self.store.read(_version_file(ref.name, ref.version, "model.onnx"))
        except NotFound:
            raise NotFound(
                f"model {ref} is incomplete in {self.store.url}: manifest.json without model.onnx (still uploading?)"
            ) from None

    def read_file(self, ref: ModelRef, file: str) -> bytes:
        """A file stored beside a version's model.onnx (e.g. check.json, the source of a converted model)."""
        return self.store.read(_version_file(ref.name, ref.version, file))

    def publish(
        self,
        name: str,
        version: str,
        model_bytes: bytes,
        inputs: Sequence[FeatureSpec],
        output: OutputSpec,
        input_name: str = "input",
        metadata: dict[str, Any] | None = None,
        baselines: Baselines | None = None,
        validation: Validation | None = None,
        source: Source | None = None,
        files: dict[str, bytes] | None = None,
    ) -> Manifest:
        """`files` (check rows, the source of a converted model) are stored beside model.onnx."""
        try:
            manifest = Manifest(
                name=name,
                version=version,
                input_name=input_name,
                inputs=list(inputs),
                output=output,
                sha256=hashlib.sha256(model_bytes).hexdigest(),
                created_at=now_iso(),
                metadata=metadata or {},
                baselines=baselines,
                validation=validation,
                source=source,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidArgument(f"manifest {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        if self.store.tag(_version_file(name, version, "manifest.json")) is not None:
            raise FailedPrecondition(f"{manifest.ref} is already published; versions are immutable")
        bad = [f for f in files or {} if f in ("model.onnx", "manifest.json") or "/" in f or f.startswith(".")]
        if bad:
            raise InvalidArgument(f"cannot store {bad} beside a model: model.onnx and manifest.json are taken")
        # Model first, manifest last: a poller only sees a version once its manifest exists.
        self.store.write(_version_file(name, version, "model.onnx"), model_bytes)
        for file, data in (files or {}).items():
            self.store.write(_version_file(name, version, file), data)
        self.store.write(_version_file(name, version, "manifest.json"), manifest.model_dump_json(indent=2).encode())
        return manifest

    # ---- predictors
    def predictor_names(self) -> list[str]:
        keys = self.store.list("predictors")
        return [k.split("/", 1)[1][: -len(".json")] for k in keys if k.endswith(".json") and k.count("/") == 1]

    def predictor_tag(self, name: str) -> str | None:
        return self.store.tag(f"predictors/{check_name('predictor', name)}.json")

    def read_predictor(self, name: str) -> PredictorConfig:
        check_name("predictor", name)
        try:
            raw = self.store.read(f"predictors/{name}.json")
        except NotFound:
            raise NotFound(f"predictor {name!r} not found in {self.store.url}") from None
        try:
            return PredictorConfig.model_validate_json(raw)
        except ValidationError as exc:
            raise ModelStoreError(f"predictor file {name}.json is invalid: {exc.errors()[0]['msg']}") from None

    def _check_published(self, ref_text: str) -> str:
        ref = ModelRef.parse(ref_text)
        pinned = self.resolve(ref)
        self.read_manifest(pinned)  # NotFound names the model when it was never published
        return str(pinned)

    def _save(self, config: PredictorConfig, action: str, before: PredictorConfig | None, **detail: Any) -> None:
        if config.slices:  # a slice must name what the (new) primary takes, else the servers refuse the file
            check_slices(config.slices, self.read_manifest(ModelRef.parse(config.primary)).inputs, config.primary)
        config.updated_at = now_iso()
        record = AuditRecord(
            at=config.updated_at,
            actor=default_actor(),
            action=action,
            predictor=config.name,
            from_primary=before.primary if before else None,
            to_primary=config.primary,
            detail=detail,
        )
        self.store.write(f"predictors/{config.name}.json", config.model_dump_json(indent=2).encode())
        stamp = config.updated_at.replace(":", "").replace("-", "")
        self.store.write(f"audit/{config.name}/{stamp}-{action}.json", record.model_dump_json(indent=2).encode())

    def _existing(self, predictor: str) -> PredictorConfig | None:
        return self.read_predictor(predictor) if self.predictor_tag(predictor) else None

    def promote(self, predictor: str, ref: str, detail: dict[str, Any] | None = None) -> PredictorConfig:
        """Make ref the primary (creating the predictor if new); detail goes into the audit record (a gate's
        evidence, or that it was forced)."""
        before = self._existing(predictor)
        pinned = self._check_published(ref)
        if before is None:
            config = PredictorConfig(name=predictor, primary=pinned)
        else:
            config = before.model_copy(deep=True, update={"primary": pinned})
        self._save(config, "promote", before, **(detail or {}))
        return config

    def rollback(self, predictor: str) -> PredictorConfig:
        """Back to the primary that served before the current one, walking the audit history: from v3 (promoted
        after v1, v2), rollback goes to v2, a second rollback to v1, a third fails (nothing earlier)."""
        before = self._existing(predictor)
        if before is None:
            raise NotFound(f"predictor {predictor!r} not found in {self.store.url}")
        served = primaries(self.history(predictor))
        if served and served[-1] != before.primary:  # the predictor file was changed by hand: back to history's
            previous: str | None = served[-1]
        else:
            previous = served[-2] if len(served) >= 2 else None
        if previous is None:
            raise FailedPrecondition(f"predictor {predictor!r} has no earlier primary to roll back to")
        config = before.model_copy(deep=True, update={"primary": previous})
        self._save(config, "rollback", before)
        return config

    def set_shadow(self, predictor: str, ref: str, sample: float) -> PredictorConfig:
        """Add or update a shadow; sample 0 removes it."""
        before = self._existing(predictor)
        if before is None:
            raise NotFound(f"predictor {predictor!r} not found; promote a primary first")
        pinned = self._check_published(ref) if sample > 0 else str(ModelRef.parse(ref))
        shadows = [s for s in before.shadows if ModelRef.parse(s.model).name != ModelRef.parse(pinned).name]
        if sample > 0:
            shadows.append(Shadow(model=pinned, sample=sample))
        config = before.model_copy(deep=True, update={"shadows": shadows})
        self._save(config, "shadow" if sample > 0 else "unshadow", before, model=pinned, sample=sample)
        return config

    def set_experiment(self, predictor: str, arm: str, ref: str | None, traffic: float) -> PredictorConfig:
        """Add or update an experiment arm; traffic 0 ends it."""
        before = self._existing(predictor)
        if before is None:
            raise NotFound(f"predictor {predictor!r} not found; promote a primary first")
        arms = [a for a in before.experiments if a.name != arm]
        if traffic > 0:
            if not ref:
                raise InvalidArgument(f"experiment arm {arm!r} needs a model@version")
            arms.append(Arm(name=arm, model=self._check_published(ref), traffic=traffic))
        try:
            config = PredictorConfig.model_validate({**before.model_dump(), "experiments": arms})
        except ValidationError as exc:
            raise InvalidArgument(exc.errors()[0]["msg"]) from None
        action = "experiment" if traffic > 0 else "end-experiment"
        self._save(config, action, before, arm=arm, model=ref, traffic=traffic)
        return config

    def history(self, predictor: str) -> list[AuditRecord]:
        check_name("predictor", predictor)
        records = []
        for key in self.store.list(f"audit/{predictor}"):
            try:
                records.append(AuditRecord.model_validate(json.loads(self.store.read(key))))
            except (ValidationError, json.JSONDecodeError):
                continue  # a foreign or damaged file is not history
        return sorted(records, key=lambda r: r.at)
