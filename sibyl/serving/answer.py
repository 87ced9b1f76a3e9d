"""What a scored call produced, before any protocol's message: each servicer turns an Answer into its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sibyl.models.runtime import OnnxModel
from sibyl.v1.predict_pb2 import DefaultedFeature, ModelScores, PredictResponse


@dataclass(frozen=True, slots=True)
class Scored:
    model: OnnxModel
    role: int
    arm: str
    matrix: np.ndarray
    scores: np.ndarray
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Answer:
    """A scored call, before any protocol's message: servicers turn it into theirs (`score(respond=...)`)."""

    prediction_id: str
    request_id: str
    predictor: str
    num_rows: int
    scored: list[Scored]  # the answering model first, then extra models
    defaulted: dict[str, np.ndarray]  # feature -> rows that took its default

    def response(self) -> PredictResponse:
        """sibyl.v1's PredictResponse."""
        return PredictResponse(
            prediction_id=self.prediction_id,
            request_id=self.request_id,
            predictor=self.predictor,
            num_rows=self.num_rows,
            results=[
                ModelScores(
                    model=s.model.name,
                    version=s.model.version,
                    role=s.role,  # type: ignore[arg-type]  # a Role value; the stub wants its NewType
                    arm=s.arm,
                    dim=s.scores.shape[1],
                    scores=s.scores.reshape(-1).tolist(),  # ravel's copy of a column slice gives up the GIL
                )
                for s in self.scored
            ],
            defaulted=[DefaultedFeature(feature=f, rows=rows.tolist()) for f, rows in self.defaulted.items()],
        )
