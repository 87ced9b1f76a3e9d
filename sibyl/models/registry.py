"""Which model versions serve which predictor, swapped atomically while serving.

The registry holds one immutable Snapshot. Readers (the request path) take `registry.snapshot` once per
request and never lock. Changes are made by building a new Snapshot (load → verify → warm up) and assigning
it in one step, so a request sees either the old or the new config, never a mix. A version that fails to
load is never served: the predictor keeps its previous config, and the failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from sibyl.errors import ModelLoadError, ModelStoreError, NotFound, SibylError
from sibyl.models.catalog import Catalog
from sibyl.models.drift import DriftMonitor
from sibyl.models.manifest import ModelKey
from sibyl.models.predictor import ModelRef, PredictorConfig, check_slices
from sibyl.models.runtime import OnnxModel
from sibyl.observability.metrics import Metrics
from sibyl.observability.multiprocess import drop_series

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    predictors: dict[str, PredictorConfig] = field(default_factory=dict)
    models: dict[ModelKey, OnnxModel] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # predictor -> why its config is not (yet) served


class ModelRegistry:
    def __init__(
        self,
        catalog: Catalog,
        metrics: Metrics,
        poll_interval_s: float = 5.0,
        intra_op_threads: int = 1,
        max_extra_models: int = 32,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.intra_op_threads = intra_op_threads
        self.snapshot = Snapshot()
        self._seen_tags: dict[str, str | None] = {}  # predictor -> tag of the file last applied
        self._reported: dict[str, tuple[str | None, str]] = {}  # predictor -> (tag, error) last logged
        self._bad_versions: dict[ModelKey, tuple[str, str]] = {}  # version -> (manifest, model) tags that failed
        self._extras: OrderedDict[ModelKey, None] = OrderedDict()  # on-demand loads (extra models), LRU
        self._max_extras = max_extra_models
        self._latest: dict[str, str] = {}  # model -> newest version, for unversioned refs
        self._not_found: dict[str, tuple[float, str]] = {}  # ref -> (when, message) of a recent NotFound
        self.drift: dict[ModelKey, DriftMonitor] = {}  # per loaded version that has baselines
        self._predictor_series: set[tuple[str, ...]] = set()  # sibyl_predictor_model label sets now set to 1
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    # ---- lifecycle
    async def start(self, poll: bool = True) -> None:
        await self.refresh()
        if poll:
            self._poller = asyncio.create_task(self._poll_forever(), name="sibyl-registry-poll")

    async def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.refresh()
            except Exception:  # never let the poller die; the next poll tries again
                log.exception("model store poll failed")

    # ---- request path (no locks, no I/O when the model is loaded)
    def predictor(self, name: str) -> PredictorConfig:
        config = self.snapshot.predictors.get(name)
        if config is None:
            why = self.snapshot.failed.get(name)
            if why:
                raise NotFound(f"predictor {name!r} is not serving: {why}")
            raise NotFound(f"predictor {name!r} not found; known: {sorted(self.snapshot.predictors) or 'none'}")
        return config

    async def model(self, ref: ModelRef) -> OnnxModel:
        """A loaded model; an unversioned or not-yet-loaded ref is resolved and loaded on demand."""
        version = ref.version or self._latest.get(ref.name)
        if version is not None:
            loaded = self.snapshot.models.get((ref.name, version))
            if loaded is not None:
                return loaded
        return await self._load_extra(ref)

    # ---- changes
    async def refresh(self) -> None:
        """One poll: apply every predictor file that changed since the last poll."""
        async with self._lock:
            try:
                names = await asyncio.to_thread(self.catalog.predictor_names)
                tags = {n: await asyncio.to_thread(self.catalog.predictor_tag, n) for n in names}
            except SibylError as exc:
                self.metrics.store_errors.inc()
                log.warning("model store unreachable, keeping what is loaded: %s", exc)
                return
            predictors = {n: c for n, c in self.snapshot.predictors.items() if n in tags}
            failed = {n: w for n, w in self.snapshot.failed.items() if n in tags}
            models = dict(self.snapshot.models)
            changed = {n for n, t in tags.items() if self._seen_tags.get(n, "unseen") != t}
            for name in sorted(changed):
                try:
                    config = await asyncio.to_thread(self.catalog.read_predictor, name)
                    for text in sorted(config.model_refs()):
                        ref = ModelRef.parse(text)
                        if ref.key not in models:
                            models[ref.key] = await self._load(ref)
                    primary = models[ModelRef.parse(config.primary).key]
                    check_slices(config.slices, primary.manifest.inputs, config.primary)  # a hand-edited file
                except SibylError as exc:
                    # Not marked seen: every later poll tries again. A version uploaded manifest-first (as
                    # `aws s3 sync` does) or a store hiccup then applies once the files are there, without
                    # waiting for the predictor file to change; a version that failed to load is not loaded
                    # again while its files are unchanged (_bad_versions), so a retry costs a few HEADs.
                    if isinstance(exc, ModelStoreError):
                        self.metrics.store_errors.inc()
                    if name not in predictors:
                        failed[name] = str(exc)
                    if self._reported.get(name) != (tags[name], str(exc)):  # once per file and reason
                        self._reported[name] = (tags[name], str(exc))
                        if name in predictors:
                            log.error(
                                "predictor %s: keeping %s, new config not applied (retried at every poll): %s",
                                name, predictors[name].primary, exc,
                            )  # fmt: skip
                        else:
                            log.error("predictor %s: not serving (retried at every poll): %s", name, exc)
                    continue
                if name in predictors and predictors[name].primary != config.primary:
                    log.info("predictor %s: primary %s -> %s", name, predictors[name].primary, config.primary)
                predictors[name] = config
                failed.pop(name, None)
                self._reported.pop(name, None)
                self._seen_tags[name] = tags[name]
            await self._refresh_latest()
            # _refresh_latest published the newest versions it preloaded in self.snapshot; `models` was copied
            # before that, so take them over (else the swap below drops them and a request loads them again).
            models.update({k: m for k, m in self.snapshot.models.items() if k not in models})
            self._swap(predictors, models, failed)

    async def _refresh_latest(self) -> None:
        for name in list(self._latest):
            try:
                versions = await asyncio.to_thread(self.catalog.versions, name)
            except SibylError:
                continue
            if versions and versions[-1] != self._latest[name]:
                try:
                    await self._load_extra(ModelRef(name, versions[-1]), locked=True)
                    self._latest[name] = versions[-1]
                except SibylError as exc:
                    log.error("model %s: newest version %s not loaded: %s", name, versions[-1], exc)

    def _swap(
        self, predictors: dict[str, PredictorConfig], models: dict[ModelKey, OnnxModel], failed: dict[str, str]
    ) -> None:
        """Keep what a predictor or a recent extra request uses; drop the rest; publish in one assignment."""
        wanted = {ModelRef.parse(r).key for c in predictors.values() for r in c.model_refs()}
        wanted |= set(self._extras)
        kept = {k: m for k, m in models.items() if k in wanted}
        for key in self.snapshot.models.keys() - kept.keys():
            drop_series(self.metrics.model_info, *key)
            monitor = self.drift.pop(key, None)
            if monitor is not None:
                monitor.close()
        for key, model in kept.items():
            self.metrics.model_info.labels(*key).set(1)
            if key not in self.drift:
                monitor = DriftMonitor.for_manifest(model.manifest, self.metrics)
                if monitor is not None:
                    self.drift[key] = monitor
        in_force = {
            (c.name, *ref.split("@"), role)
            for c in predictors.values()
            for ref, role in [(c.primary, "primary")]
            + [(s.model, "shadow") for s in c.shadows]
            + [(a.model, "experiment") for a in c.experiments]
        }
        for labels in self._predictor_series - in_force:
            drop_series(self.metrics.predictor_info, *labels)
        for labels in in_force:
            self.metrics.predictor_info.labels(*labels).set(1)
        self._predictor_series = in_force
        self.snapshot = Snapshot(predictors=predictors, models=kept, failed=failed)

    async def _load(self, ref: ModelRef) -> OnnxModel:
        """Fetch, verify and warm up one version in a thread (the event loop keeps serving)."""
        key = ref.key
        # Create the series at 0 first: a counter child born at 1 hides its first failure from increase().
        self.metrics.model_loads.labels(ref.name, "failed")
        tag = await asyncio.to_thread(self.catalog.manifest_tag, ref)
        if tag is None:
            raise NotFound(f"model {ref} not found in {self.catalog.store.url}")
        model_tag = await asyncio.to_thread(self.catalog.model_tag, ref)
        if model_tag is None:
            raise NotFound(
                f"model {ref} is incomplete in {self.catalog.store.url}: manifest.json without model.onnx "
                "(still uploading?)"
            )
        tags = (tag, model_tag)  # a partly copied model.onnx that is later completed is tried again
        if self._bad_versions.get(key) == tags:
            raise ModelLoadError(f"model {ref} failed to load before and has not changed")
        try:
            model = await asyncio.to_thread(self._load_blocking, ref)
        except ModelLoadError as exc:
            self._bad_versions[key] = tags
            self.metrics.model_loads.labels(ref.name, "failed").inc()
            log.error("model %s rejected: %s", ref, exc)
            raise
        except ModelStoreError:
            self.metrics.model_loads.labels(ref.name, "failed").inc()
            raise
        self.metrics.model_loads.labels(ref.name, "ok").inc()
        log.info("model %s loaded (warm-up %.1f ms)", ref, model.warmup_ms)
        return model

    def _load_blocking(self, ref: ModelRef) -> OnnxModel:
        manifest = self.catalog.read_manifest(ref)
        return OnnxModel(manifest, self.catalog.read_model(ref), self.intra_op_threads)

    async def _load_extra(self, ref: ModelRef, locked: bool = False) -> OnnxModel:
        # An unknown model is remembered for one poll interval: a caller repeating a bad name must not turn
        # every request into a model-store lookup (an S3 request) under the registry lock.
        seen = self._not_found.get(str(ref))
        if seen is not None and time.monotonic() - seen[0] < self.poll_interval_s:
            raise NotFound(seen[1])
        try:
            return await self._load_extra_unchecked(ref, locked)
        except NotFound as exc:
            self._not_found[str(ref)] = (time.monotonic(), str(exc))
            if len(self._not_found) > 1024:
                self._not_found.pop(next(iter(self._not_found)))
            raise

    async def _load_extra_unchecked(self, ref: ModelRef, locked: bool) -> OnnxModel:
        if locked:
            return await self._load_extra_locked(ref)
        async with self._lock:
            return await self._load_extra_locked(ref)

    async def _load_extra_locked(self, ref: ModelRef) -> OnnxModel:
        pinned = await asyncio.to_thread(self.catalog.resolve, ref)
        key = pinned.key
        if ref.version is None:
            self._latest[ref.name] = key[1]
        model = self.snapshot.models.get(key) or await self._load(pinned)
        self._extras[key] = None
        self._extras.move_to_end(key)
        while len(self._extras) > self._max_extras:
            self._extras.popitem(last=False)
        self._swap(self.snapshot.predictors, {**self.snapshot.models, key: model}, self.snapshot.failed)
        return model
