"""What a scored call leaves for after its response, run on the after-response threads (serving.after_response),
never on the event loop: the score and drift metrics of each model that answered, their prediction log records,
the verdicts (serving.verdicts: the answer by slice, every candidate against the primary), and the sampled shadows,
each scored, measured, judged and logged the same way on a shadow thread."""

from __future__ import annotations

import functools
import math
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sibyl.models.manifest import ModelKey
from sibyl.models.predictor import ModelRef
from sibyl.models.registry import ModelRegistry
from sibyl.models.runtime import OnnxModel
from sibyl.observability.metrics import Metrics
from sibyl.predlog.base import PredictionSink
from sibyl.serving import assembly
from sibyl.serving.after_response import AfterResponse
from sibyl.serving.answer import Scored
from sibyl.serving.decode import CodedIds, RowBatch
from sibyl.serving.records import build_record
from sibyl.serving.routing import ROLE_NAMES
from sibyl.serving.verdicts import CallSlices, PredictorVerdicts, Verdicts
from sibyl.v1.predict_pb2 import PredictRequest, Role

# (model, role, arm, plan) -> the model's scores of the plan's rows, timed: PredictionService's own scoring.
ScoreNow = Callable[[OnnxModel, int, str, assembly.Plan], Scored]
ANSWERING = (Role.ROLE_PRIMARY, Role.ROLE_EXPERIMENT)  # the roles whose answer is the predictor's output


@dataclass(frozen=True, slots=True)
class Call:
    """One answered call, as its after-response work needs it."""

    request: PredictRequest
    prediction_id: str
    batch: RowBatch
    plan: assembly.Plan
    defaulted: dict[str, np.ndarray]
    scored: list[Scored]
    shadows: list[OnnxModel]


class Followup:
    def __init__(
        self,
        registry: ModelRegistry,
        sink: PredictionSink,
        after: AfterResponse,
        metrics: Metrics,
        score_now: ScoreNow,
        log_features: bool,
        drift_sample: float,
        verdicts: Verdicts | None = None,
    ) -> None:
        self.registry, self.sink, self.after, self.metrics = registry, sink, after, metrics
        self.verdicts = verdicts  # None: verdicts off (metrics.verdicts)
        self.score_now, self.log_features, self.drift_sample = score_now, log_features, drift_sample
        self.host = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, call: Call) -> None:
        """On the after-response records thread: the answering models' metrics, records and verdicts, then the
        shadows."""
        sent_at = time.time_ns()
        judged = self._judge(call)  # before the records: what a reader finds in the log is counted already
        for i, s in enumerate(call.scored):
            self._measure_and_log(call, s, sent_at, judged if i == 0 else None)  # drift by slice: the answer's
        for model in call.shadows:

            def job(model: OnnxModel = model) -> None:  # on a shadow thread
                s = self.score_now(model, Role.ROLE_SHADOW, "", call.plan)
                if judged is not None and judged.primary is not None:  # first: its record is then counted already
                    judged.state.compared(s.model, ROLE_NAMES[s.role], judged.call, judged.primary, s.scores)
                self._measure_and_log(call, s, time.time_ns())

            self.after.submit_shadow(call.request.predictor, job)

    def _judge(self, call: Call) -> Judged | None:
        """The call's verdicts: its rows' slices, the answer counted by slice, each other model that scored the
        primary's rows compared with it. None when the predictor is gone."""
        config = self.registry.snapshot.predictors.get(call.request.predictor)
        if config is None or not call.scored or self.verdicts is None:
            return None
        state = self.verdicts.of(config)
        rows = state.calls_rows(CallRows(call))
        answer = call.scored[0]
        if answer.role in ANSWERING:
            state.answered(answer.model, rows, answer.scores)
        primary_key = _key(config.primary)
        primary = next((s for s in call.scored if s.model.key == primary_key), None)
        if primary is None:  # an arm answered without the primary beside it: nothing to compare with
            return Judged(state, rows, None)
        for s in call.scored:
            if s is not primary:
                state.compared(s.model, ROLE_NAMES[s.role], rows, primary.scores, s.scores)
        return Judged(state, rows, primary.scores)

    def _measure_and_log(self, call: Call, s: Scored, sent_at_ns: int, judged: Judged | None = None) -> None:
        if s.scores.shape[0]:  # one row per call samples the distribution
            score = self.metrics.scores.labels(s.model.name, ROLE_NAMES[s.role])
            self.metrics.deferred.append((score, float(s.scores[0, 0])))
        monitor = self.registry.drift.get(s.model.key)
        # A sample of calls estimates the live distribution as well as all of them, at a fraction of the cost.
        if monitor is not None and random.random() < self.drift_sample:
            bins = monitor.observe(s.matrix, s.scores[:, 0])
            if bins is not None and judged is not None and judged.state.slicer.active:
                judged.state.drifted(monitor, bins, judged.call)  # by slice once the flush labels the rows
        request = call.request
        self.sink.submit(
            build_record(
                prediction_id=call.prediction_id,
                request_id=request.request_id,
                predictor=request.predictor,
                model=s.model.name,
                version=s.model.version,
                role=s.role,
                arm=s.arm,
                sent_at_ns=sent_at_ns,
                batch=call.batch,
                columns=s.model.columns,
                matrix=s.matrix if self.log_features else None,
                defaulted=call.defaulted,
                scores=s.scores,
                latency_ms=s.latency_ms,
                host=self.host,
            )
        )


@functools.lru_cache(maxsize=256)
def _key(ref: str) -> ModelKey:
    """A model reference's registry key, parsed once per distinct text (a predictor's primary, on every call)."""
    return ModelRef.parse(ref).key


@dataclass(frozen=True, slots=True)
class Judged:
    """A call's verdict state: its predictor's, its rows (labelled by slice later), the primary's scores (None: not
    scored)."""

    state: PredictorVerdicts
    call: CallSlices
    primary: np.ndarray | None


class CallRows:
    """A call's rows as slices read them (serving.slices.SliceRows): a feature's values from the first model
    that took it (defaults in, as the model saw them), else from the request."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.num_rows = call.batch.num_rows
        self.defaulted = call.defaulted

    def _source(self, feature: str) -> tuple[np.ndarray, int] | None:
        """The matrix holding the feature and its column: the first model that took it, else the request's."""
        for s in self.call.scored:
            if feature in s.model.column_set:
                return s.matrix, s.model.columns.index(feature)
        layout = self.call.plan.layout
        if feature in layout.columns:
            return self.call.plan.values, layout.columns.index(feature)
        return None

    def column(self, feature: str) -> np.ndarray | None:
        found = self._source(feature)
        return None if found is None else found[0][:, found[1]]

    def entity_ids(self, entity: str) -> str | CodedIds | None:
        return self.call.batch.entity_ids(entity)

    def first_value(self, feature: str) -> float:
        found = self._source(feature)
        return math.nan if found is None else float(found[0][0, found[1]])

    def first_id(self, entity: str) -> str:
        return self.call.batch.first_id(entity)

    def row_ids(self, entity: str) -> str | CodedIds | list[str] | None:
        batch = self.call.batch
        ids = batch.row_entities.get(entity)
        if ids is None or entity in batch.coded_entities:
            return batch.entity_ids(entity)
        shared = batch.shared_entities.get(entity)  # fills the rows without their own, as entity_ids does
        return [i or shared for i in ids] if shared else ids
