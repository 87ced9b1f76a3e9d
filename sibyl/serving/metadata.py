"""What a caller asks besides a prediction, transport-free: is a predictor ready, which model answers it and
what that model takes, which versions there are, and per-predictor call statistics.

PredictionService answers these questions with the types below; the KServe V2 servicer turns them into its
messages. A predictor is addressed with an optional version (docs/protocols.md): "" routes as usual, "7" pins
the primary's model at version 7, "model@7" names any model (a model override: shadows and the log still apply).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from sibyl.models.predictor import ModelRef
from sibyl.models.registry import ModelRegistry, Snapshot
from sibyl.models.runtime import OnnxModel


def override(primary: str, version: str) -> str:
    """The model override a version implies: "" (route as usual) or "model@version".

    primary: the predictor's primary "model@version", whose model a bare version number refers to."""
    if not version or "@" in version:
        return version
    return str(ModelRef(ModelRef.parse(primary).name, version))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A predictor seen as one model: the model a call with this version is scored by, and what it takes."""

    predictor: str
    override: str  # the model override the version implies: "" or "model@version"
    model: OnnxModel
    # Fields, not properties: a V2 call reads them on every call.
    input_name: str = field(init=False)  # the model's ONNX input, float32 [N, len(columns)]
    columns: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_name", self.model.manifest.input_name)
        object.__setattr__(self, "columns", self.model.columns)

    @property
    def ref(self) -> str:
        """The answering model, "model@version"."""
        return self.model.ref

    @property
    def features(self) -> list[tuple[str, int]]:
        """(feature, width) per input, in the model's order."""
        return [(f.name, f.dim) for f in self.model.manifest.inputs]

    @property
    def entities(self) -> list[str]:
        """Entity ids the feature store is asked by, in first-use order; none that is also a feature."""
        inputs = self.model.manifest.inputs
        features = {f.name for f in inputs}
        return list(dict.fromkeys(f.entity for f in inputs if f.entity and f.entity not in features))

    @property
    def dim(self) -> int:
        """Score width: the output is float32 [N, dim]."""
        return self.model.dim


async def model_info(registry: ModelRegistry, predictor: str, version: str = "") -> ModelInfo:
    """NotFound for an unknown predictor or a version not in the store; a version not yet loaded is loaded."""
    config = registry.predictor(predictor)
    pinned = override(config.primary, version)
    return ModelInfo(predictor, pinned, await registry.model(ModelRef.parse(pinned or config.primary)))


def model_ready(snapshot: Snapshot, predictor: str, version: str = "") -> bool:
    """Loaded and serving, without loading anything."""
    config = snapshot.predictors.get(predictor)
    if config is None:
        return False
    return ModelRef.parse(override(config.primary, version) or config.primary).key in snapshot.models


def versions(snapshot: Snapshot, predictor: str) -> list[str]:
    """The loaded versions of the predictor's primary model (NotFound-free: [] for an unknown predictor)."""
    config = snapshot.predictors.get(predictor)
    if config is None:
        return []
    model = ModelRef.parse(config.primary).name
    return sorted(v for m, v in snapshot.models if m == model)


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    predictor: str
    version: str  # the primary that answers it; "" when it is not serving
    ready: bool
    reason: str = ""  # why it is not serving


def repository(snapshot: Snapshot, ready_only: bool = False) -> list[RepositoryEntry]:
    """Serving predictors by name, then (unless ready_only) those whose config failed, by name."""
    out = [RepositoryEntry(n, c.primary, True) for n, c in sorted(snapshot.predictors.items())]
    if not ready_only:
        out += [RepositoryEntry(n, "", False, why) for n, why in sorted(snapshot.failed.items())]
    return out


@dataclass
class CallStats:
    """One predictor's calls, for Triton's statistics extension (perf_analyzer reports server-side times from it)."""

    calls: int = 0  # successful calls (executions)
    rows: int = 0  # rows scored by them (inferences)
    ok: int = 0
    ok_ns: int = 0
    failed: int = 0
    failed_ns: int = 0
    last_ms: int = 0  # wall clock of the last success, unix milliseconds

    def record(self, ok: bool, elapsed_s: float, rows: int) -> None:
        if ok:
            self.calls += 1
            self.rows += rows
            self.ok += 1
            self.ok_ns += int(elapsed_s * 1e9)
            self.last_ms = int(time.time() * 1000)
        else:
            self.failed += 1
            self.failed_ns += int(elapsed_s * 1e9)


@dataclass(frozen=True, slots=True)
class PredictorStats:
    predictor: str
    version: str  # the version asked for, else the primary's (numeric, as Triton's are)
    stats: CallStats  # a copy


def statistics(
    registry: ModelRegistry, counted: dict[str, CallStats], predictor: str = "", version: str = ""
) -> list[PredictorStats]:
    """One predictor (NotFound when unknown) or every serving one, by name."""
    if predictor:
        registry.predictor(predictor)  # NotFound for an unknown name
    names = [predictor] if predictor else sorted(registry.snapshot.predictors)
    return [
        PredictorStats(
            name,
            version or ModelRef.parse(registry.predictor(name).primary).version or "",
            replace(counted.get(name) or CallStats()),
        )
        for name in names
    ]
