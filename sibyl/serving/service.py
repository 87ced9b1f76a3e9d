"""The prediction hot path, transport-free: decode → route → features → infer → respond → (after) log, shadows.

The gRPC servicer, the KServe V2 servicer and the embedded Python API all score through this service: the
embedded API calls `predict`; servicers admit a call before parsing its bytes (`admitted`), decode it (in a
worker thread when large: `off_loop`) and `score` it.
The service also answers what a caller asks besides a prediction (readiness, model metadata, statistics; the
logic in serving.metadata) and counts every call, so a servicer only converts messages and delegates.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from prometheus_client import Histogram

from sibyl.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from sibyl.features.base import FeatureFetcher, FetchResult
from sibyl.gil import GATE
from sibyl.models.predictor import ModelRef, PredictorConfig
from sibyl.models.registry import ModelRegistry, Snapshot
from sibyl.models.runtime import OnnxModel
from sibyl.observability.metrics import Metrics
from sibyl.observability.tracing import Tracing
from sibyl.predlog.base import PredictionSink
from sibyl.serving import assembly, metadata
from sibyl.serving.after_response import AfterResponse
from sibyl.serving.answer import Answer, Scored
from sibyl.serving.decode import Limits, RowBatch, decode
from sibyl.serving.decode_pool import DecodePool
from sibyl.serving.followup import Call, Followup
from sibyl.serving.metadata import CallStats, ModelInfo, PredictorStats, RepositoryEntry
from sibyl.serving.routing import ROLE_NAMES, choose
from sibyl.serving.verdicts import Verdicts
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse, Role

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ServiceOptions:
    limits: Limits = field(default_factory=Limits)
    offload_rows: int = 512  # batches this large run inference in a thread so the event loop keeps serving
    decode_offload_bytes: int = 65_536  # requests larger than this are parsed and decoded in a thread
    decode_process_bytes: int = 262_144  # Predict requests larger than this: in a decode process (serving.decode_pool)
    decode_processes: int = 1  # 0: big requests decode in a thread too
    max_in_flight: int = 512
    log_features: bool = True
    drift_sample: float = 0.1  # share of calls whose inputs and scores feed the drift histograms
    verdicts: bool = True  # serving.verdicts: candidates against the primary, decisions by slice


class PredictionService:
    def __init__(
        self,
        registry: ModelRegistry,
        fetcher: FeatureFetcher,
        sink: PredictionSink,
        after: AfterResponse,
        metrics: Metrics,
        options: ServiceOptions = ServiceOptions(),
    ) -> None:
        self.registry, self.fetcher, self.sink, self.after = registry, fetcher, sink, after
        self.metrics, self.options = metrics, options
        self.in_flight = 0
        self.leaving = False  # set when a drain starts: not ready (clients and balancers move), still serving
        self.draining = False  # set later in the drain: new calls get UNAVAILABLE, in-flight ones finish
        self.tracing: Tracing | None = None  # observability.tracing; None (off) costs one test per call
        self.decode_pool = DecodePool(options.decode_processes, options.decode_process_bytes, metrics.big_requests)
        o = options
        self.verdicts = Verdicts(metrics) if o.verdicts else None
        if self.verdicts is not None:
            metrics.deferred.hooks.append(self.verdicts.flush)  # before each scrape; a thread flushes every second
        self._followup = Followup(
            registry, sink, after, metrics, self._score_now, o.log_features, o.drift_sample, self.verdicts
        )
        # Labelled metric children bound once: .labels() costs a lock and a dict lookup per call.
        stage = metrics.stage_latency
        self._t_decode, self._t_route, self._t_features, self._t_infer, self._t_encode = (
            stage.labels(s) for s in ("decode", "route", "features", "infer", "encode")
        )
        self._from_request, self._from_store, self._from_default = (
            metrics.feature_lookups.labels(s) for s in ("request", "store", "default")
        )
        self._timers: dict[tuple[str, str, int], Histogram] = {}
        # Per-call metric updates, (metric, value), applied in bulk off the request path (observability.deferred).
        self._deferred = metrics.deferred
        self._defer = metrics.deferred.append
        self._call_metrics: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._stats: dict[str, CallStats] = {}  # per predictor, the calls a servicer asked to count
        # model_info's answers for the snapshot they were computed from: a new snapshot starts afresh.
        self._infos: dict[tuple[str, str], ModelInfo] = {}
        self._infos_of: Snapshot | None = None

    def busy(self, fraction: float) -> bool:
        return self.in_flight > fraction * self.options.max_in_flight

    # ---- calls, readiness, metadata and statistics (serving.metadata)
    def observe_call(self, predictor: str, code: str, elapsed_s: float, rows: int = 0, counted: bool = False) -> None:
        """One finished call: code "OK" or the error's status name; counted: also into statistics()."""
        known = predictor in self.registry.snapshot.predictors
        label = predictor if known else "unknown"  # hostile names must not grow the metrics without bound
        ok = code == "OK"
        children = self._call_metrics.get((label, code))
        if children is None:  # bound once per (predictor, code): .labels() takes a lock and builds a key
            m = self.metrics
            children = (m.requests.labels(label, code), m.request_latency.labels(label), m.batch_rows.labels(label))
            if len(self._call_metrics) < 10_000:
                self._call_metrics[(label, code)] = children
        defer = self._defer
        defer((children[0], 1))
        defer((children[1], elapsed_s))
        if ok:
            defer((children[2], rows))
        deferred = self._deferred
        if len(deferred.items) > deferred.limit:  # checked once per call: nothing has flushed for a while
            deferred.flush()
        if counted and known:
            self._stats.setdefault(predictor, CallStats()).record(ok, elapsed_s, rows)

    def live(self) -> bool:
        return True  # the process answers calls: that is all liveness means here

    def ready(self) -> bool:
        # Not ready while draining: clients and balancers stop sending, as with the gRPC health service.
        return bool(self.registry.snapshot.predictors) and not (self.leaving or self.draining)

    def model_ready(self, predictor: str, version: str = "") -> bool:
        return metadata.model_ready(self.registry.snapshot, predictor, version)

    async def model_info(self, predictor: str, version: str = "") -> ModelInfo:
        """serving.metadata.model_info, remembered while the registry's snapshot stays the same (a V2 call asks
        it on every call)."""
        snapshot = self.registry.snapshot
        if snapshot is not self._infos_of:
            self._infos, self._infos_of = {}, snapshot
        info = self._infos.get((predictor, version))
        if info is None:
            info = await metadata.model_info(self.registry, predictor, version)
            pinned = not info.override or ModelRef.parse(info.override).version  # "model@": the newest, may move
            if pinned and self.registry.snapshot is snapshot and len(self._infos) < 1_000:
                self._infos[(predictor, version)] = info
        return info

    def versions(self, predictor: str) -> list[str]:
        return metadata.versions(self.registry.snapshot, predictor)

    def repository(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return metadata.repository(self.registry.snapshot, ready_only)

    def statistics(self, predictor: str = "", version: str = "") -> list[PredictorStats]:
        return metadata.statistics(self.registry, self._stats, predictor, version)

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """One call's admission: UNAVAILABLE while draining, RESOURCE_EXHAUSTED at max_in_flight, else in flight
        until it ends. Servicers enter it before they parse a request's bytes: a refused call decodes nothing."""
        if self.draining:
            self.metrics.rejected.labels("draining").inc()
            raise Unavailable("server is shutting down; retry on another replica")
        if self.in_flight >= self.options.max_in_flight:
            self.metrics.rejected.labels("overload").inc()
            raise ResourceExhausted(f"server busy: {self.in_flight} calls in flight; retry with backoff")
        self.in_flight += 1
        paced = GATE.pacing.slice_s > 0  # sibyl.gil: paced threads wait for the calls in flight (off: no cost)
        if paced:
            GATE.enter()
        gauge = self.metrics.in_flight
        self._defer((gauge, 1))  # the gauge as deferred increments: a scrape flushes them first
        try:
            yield
        finally:
            self.in_flight -= 1
            if paced:
                GATE.leave()
            self._defer((gauge, -1))

    async def off_loop(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a worker thread when the request is over decode_offload_bytes (one large legal request
        must not stall health checks and small calls), else inline: a thread hop costs more than a small decode."""
        if size > self.options.decode_offload_bytes:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    def decode(self, request: PredictRequest) -> RowBatch:
        """Rows into one float32 matrix, NaN where a feature was not given (serving.decode); thread-safe."""
        return self.timed_decode(decode, request)

    def timed_decode(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args, limits) timed as the decode stage: serving.decode's, or a protocol adapter's own (KServe V2
        tensors straight to rows)."""
        start = time.perf_counter()
        out = fn(*args, self.options.limits)
        self._defer((self._t_decode, time.perf_counter() - start))
        return out

    async def predict(self, request: PredictRequest, time_remaining_s: float | None = None) -> PredictResponse:
        """Admit, decode (in a worker thread when large) and score: the call of the embedded API."""
        with self.admitted():
            batch = await self.off_loop(request.ByteSize(), self.decode, request)
            return await self.score(request, batch, time_remaining_s)

    async def score(
        self,
        request: PredictRequest,
        batch: RowBatch,
        time_remaining_s: float | None = None,
        trace: Mapping[str, str] | None = None,
        respond: Callable[[Answer], R] = Answer.response,  # type: ignore[assignment]  # R is PredictResponse then
    ) -> R:
        """A decoded call, already admitted (servicers admit before parsing, then decode, then call this).
        trace: the caller's W3C trace context (traceparent, tracestate), used when tracing is on;
        respond: the Answer -> the protocol's response (timed as the encode stage); default sibyl.v1's."""
        deadline = None if time_remaining_s is None else time.monotonic() + time_remaining_s
        if self.tracing is None:
            return await self._predict(request, batch, deadline, respond)
        stages: list[tuple[str, float, float]] = []
        start, error = time.perf_counter(), None
        try:
            return await self._predict(request, batch, deadline, respond, stages)
        except Exception as exc:
            error = exc
            raise
        finally:
            attributes = {"sibyl.predictor": request.predictor, "sibyl.rows": batch.num_rows}
            spans = functools.partial(
                self.tracing.record, "sibyl.predict", trace, attributes, stages, start, time.perf_counter(), error
            )
            self.after.submit_followup(spans, records=0)  # spans: off the loop

    async def _predict(
        self,
        request: PredictRequest,
        batch: RowBatch,
        deadline: float | None,
        respond: Callable[[Answer], R],
        stages: list[Any] | None = None,
    ) -> R:
        # 1. Decode: done before (PredictionService.decode), so a large request can be decoded off the loop.
        t1 = time.perf_counter()

        # 2. Route: the model that answers (primary, experiment arm or override), extras, sampled shadows.
        snapshot = self.registry.snapshot
        config = snapshot.predictors.get(request.predictor) or self.registry.predictor(request.predictor)  # NotFound
        route = choose(config, request.context, request.model_override)
        to_score = [(await self._model(snapshot, route.model), route.role, route.arm)]
        for text in request.extra_models:
            to_score.append((await self._model(snapshot, ModelRef.parse(text)), Role.ROLE_EXTRA, ""))
        shadows = self._sample_shadows(config, {m.key for m, _, _ in to_score})
        self._check_feature_names(batch, config, [m for m, _, _ in to_score])
        t2 = time.perf_counter()
        self._defer((self._t_route, t2 - t1))

        # 3. Features: what the request lacks, for every model, in one fetch; then defaults.
        plan = assembly.plan(batch, [m for m, _, _ in to_score] + shadows)
        fetched = await self._fetch(plan, deadline)
        from_store = assembly.fill(plan, batch, fetched.values)
        defaulted = assembly.defaulted(plan)
        self._count_features(plan, from_store, defaulted)
        t3 = time.perf_counter()
        self._defer((self._t_features, t3 - t2))

        # 4. Infer: one matrix and one session.run per model.
        _check_deadline(deadline, "before inference")
        scored = [await self._score(model, role, arm, plan) for model, role, arm in to_score]
        t4 = time.perf_counter()
        self._defer((self._t_infer, t4 - t3))

        # 5. Respond; logging and shadows run after the response is on its way.
        prediction_id = new_prediction_id()
        answer = Answer(prediction_id, request.request_id, request.predictor, batch.num_rows, scored, defaulted)
        response = respond(answer)
        t5 = time.perf_counter()
        self._defer((self._t_encode, t5 - t4))
        if stages is not None:  # tracing on: the stage spans are written from these readings
            stages += [("route", t1, t2), ("features", t2, t3), ("infer", t3, t4), ("encode", t4, t5)]
        # Scores, drift, the log record and the shadows: after the response, on the loop for a small call, else on
        # the records thread (serving.after_response).
        call = Call(request, prediction_id, batch, plan, defaulted, scored, shadows)
        self.after.submit_followup(
            functools.partial(self._followup.run, call), records=len(scored), rows=batch.num_rows
        )
        return response

    # ---- steps
    async def _model(self, snapshot: Snapshot, ref: ModelRef) -> OnnxModel:
        """A pinned model the snapshot holds, else the registry's answer (it resolves and loads on demand)."""
        loaded = snapshot.models.get(ref.key) if ref.version else None
        return loaded if loaded is not None else await self.registry.model(ref)

    def _sample_shadows(self, config: PredictorConfig, answering: set[tuple[str, str]]) -> list[OnnxModel]:
        chosen = []
        for shadow in config.shadows:
            model = self.registry.snapshot.models.get(ModelRef.parse(shadow.model).key)
            if model is None or model.key in answering:
                continue
            if shadow.sample >= 1.0 or random.random() < shadow.sample:
                chosen.append(model)
        return chosen

    def _check_feature_names(self, batch: RowBatch, config: PredictorConfig, models: list[OnnxModel]) -> None:
        """A name no model of this predictor takes is almost always a caller's typo: say so."""
        known = set().union(*(m.column_set for m in models))
        unknown = [n for n in batch.names if n not in known]
        if not unknown:
            return
        for text in config.model_refs():  # shadows and other arms may take what the answering model does not
            other = self.registry.snapshot.models.get(ModelRef.parse(text).key)
            if other is not None:
                known |= other.column_set
        unknown = [n for n in unknown if n not in known]
        if unknown:
            takes = ", ".join(m.ref for m in models)
            raise InvalidArgument(
                f"unknown feature(s) {unknown[:5]} for predictor {config.name!r} ({takes}); "
                f"expected names like {sorted(known)[:8]}"
            )

    async def _fetch(self, plan: assembly.Plan, deadline: float | None) -> FetchResult:
        if not plan.wanted:
            return FetchResult()
        budget = None  # the fetcher applies features.budget_ms; a call's deadline may cut it shorter
        if deadline is not None:
            _check_deadline(deadline, "before the feature fetch")
            budget = (deadline - time.monotonic()) * 0.8
        return await self.fetcher.fetch(plan.wanted, budget)  # the fetcher times itself, per backend

    def _count_features(self, plan: assembly.Plan, from_store: int, defaulted: dict[str, np.ndarray]) -> None:
        self._defer((self._from_request, plan.from_request))
        if from_store:
            self._from_store.inc(from_store)
        for feature, rows in defaulted.items():
            self.metrics.feature_defaults.labels(feature).inc(len(rows))
            self._from_default.inc(len(rows))

    async def _score(self, model: OnnxModel, role: int, arm: str, plan: assembly.Plan) -> Scored:
        # Small batches run inline: a thread hop costs more than their inference, and the GIL is shared anyway
        # (docs/performance.md#inference-call).
        if plan.values.shape[0] >= self.options.offload_rows:
            return await asyncio.to_thread(self._score_now, model, role, arm, plan)
        return self._score_now(model, role, arm, plan)

    def _score_now(self, model: OnnxModel, role: int, arm: str, plan: assembly.Plan) -> Scored:
        matrix = assembly.matrix(plan, model)
        start = time.perf_counter()
        scores = model.run(matrix)
        elapsed = time.perf_counter() - start
        self._defer((self._inference_timer(model, role), elapsed))
        return Scored(model, role, arm, matrix, scores, elapsed * 1000)

    def _inference_timer(self, model: OnnxModel, role: int) -> Histogram:
        key = (model.name, model.version, role)
        timer = self._timers.get(key)
        if timer is None:
            timer = self._timers[key] = self.metrics.inference_latency.labels(
                model.name, model.version, ROLE_NAMES[role]
            )
        return timer


def _check_deadline(deadline: float | None, where: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded(f"deadline passed {where}; raise the client's timeout")


# Prediction ids: 128 random bits from os.urandom in hex (api.outcomes.PREDICTION_ID), drawn ID_POOL at a time:
# os.urandom gives the GIL up around its system call, one more moment per call at which a waiting thread could
# take it from the loop (docs/performance.md#gil-releases). A forked child starts with an empty pool, so it never
# hands out ids its parent still holds.
ID_POOL = 1024
_ids: list[str] = []


def new_prediction_id() -> str:
    while True:
        try:
            return _ids.pop()
        except IndexError:  # empty (pop and extend are atomic: two threads refilling at once is harmless)
            raw = os.urandom(16 * ID_POOL).hex()
            _ids.extend(raw[i : i + 32] for i in range(0, len(raw), 32))


os.register_at_fork(after_in_child=_ids.clear)
