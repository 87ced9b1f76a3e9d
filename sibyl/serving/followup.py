"""What a scored call leaves for after its response, run on the after-response threads (serving.after_response),
never on the event loop: the score and drift metrics of each model that answered, their prediction log records,
and the sampled shadows, each scored, measured and logged the same way on a shadow thread."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sibyl.models.registry import ModelRegistry
from sibyl.models.runtime import OnnxModel
from sibyl.observability.metrics import Metrics
from sibyl.predlog.base import PredictionSink
from sibyl.serving import assembly
from sibyl.serving.after_response import AfterResponse
from sibyl.serving.answer import Scored
from sibyl.serving.decode import RowBatch
from sibyl.serving.records import build_record
from sibyl.serving.routing import ROLE_NAMES
from sibyl.v1.predict_pb2 import PredictRequest, Role

# (model, role, arm, plan) -> the model's scores of the plan's rows, timed: PredictionService's own scoring.
ScoreNow = Callable[[OnnxModel, int, str, assembly.Plan], Scored]


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
    ) -> None:
        self.registry, self.sink, self.after, self.metrics = registry, sink, after, metrics
        self.score_now, self.log_features, self.drift_sample = score_now, log_features, drift_sample
        self.host = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, call: Call) -> None:
        """On the after-response records thread: the answering models' metrics and records, then the shadows."""
        sent_at = time.time_ns()
        for s in call.scored:
            self._measure_and_log(call, s, sent_at)
        for model in call.shadows:

            def job(model: OnnxModel = model) -> None:  # on a shadow thread
                self._measure_and_log(call, self.score_now(model, Role.ROLE_SHADOW, "", call.plan), time.time_ns())

            self.after.submit_shadow(call.request.predictor, job)

    def _measure_and_log(self, call: Call, s: Scored, sent_at_ns: int) -> None:
        if s.scores.shape[0]:  # one row per call samples the distribution
            score = self.metrics.scores.labels(s.model.name, ROLE_NAMES[s.role])
            self.metrics.deferred.append((score, float(s.scores[0, 0])))
        monitor = self.registry.drift.get(s.model.key)
        # A sample of calls estimates the live distribution as well as all of them, at a fraction of the cost.
        if monitor is not None and random.random() < self.drift_sample:
            monitor.observe(s.matrix, s.scores[:, 0])
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
