"""BentoML 1.4 service: `bentoml serve bentoml_app:Gbdt --host 127.0.0.1 --port P` with this dir as the working dir.
POST /predict {"rows": [[16 floats], ...]} -> {"scores": [...]}. Service defaults (one worker process); a sync
API method, as BentoML's examples write one. Runs inside the bentoml venv."""

from __future__ import annotations

import bentoml
from ort_model import OrtModel


@bentoml.service
class Gbdt:
    def __init__(self) -> None:
        self.model = OrtModel()

    @bentoml.api
    def predict(self, rows: list[list[float]]) -> dict[str, list[float]]:
        return {"scores": self.model.scores(rows)}
