"""Experiment arms in the verdicts: an arm that answers for a unit is compared with the primary only on rows the
primary also scored (extra_models), under role "experiment"; its answers count as the predictor's decisions. An
in-process server over a real model store and real models (tests/observability/test_verdicts_live.py checks the
numbers through `sibyl serve`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.support.inproc import running_server
from tests.support.onnxgen import expected_scores, publish_logistic

WEIGHTS = {"prim": ([0.5, -0.02, 0.3, 1.0, -1.0], -0.5), "arm": ([0.4, -0.01, 0.5, 0.8, -0.9], -0.2)}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    catalog = Catalog(FileStore(tmp_path / "store"))
    for name, (weights, bias) in WEIGHTS.items():
        publish_logistic(catalog, name, "1", weights, bias)
    catalog.promote("p", "prim@1")
    catalog.set_experiment("p", "treatment", "arm@1", 1.0)  # every unit lands in the arm
    return tmp_path


def request(amount: float, extra: bool) -> PredictRequest:
    row = FeatureRow(features={"amount": amount, "age": 30.0, "rating": 4.0, "emb[0]": 0.1, "emb[1]": 0.2})
    return PredictRequest(
        predictor="p", context={"consumer_id": "u1"}, rows=[row], extra_models=["prim@1"] if extra else []
    )


async def test_an_arm_is_compared_with_the_primary_only_where_both_scored(store: Path) -> None:
    amounts = np.linspace(-8, 4, 24)  # both decisions for each model, and rows where they differ
    async with running_server(store) as server:
        for i, amount in enumerate(amounts):
            response = await server.service.predict(request(float(amount), extra=i % 2 == 0))
            assert response.results[0].model == "arm"
        await server.app.after.stop(10.0)  # every follow-up done
        server.metrics.deferred.settle()
        value = server.metrics.registry.get_sample_value

        arm = {"predictor": "p", "model": "arm", "version": "1", "slice": "all"}
        compared = [amounts[i] for i in range(0, 24, 2)]  # the calls that asked for the primary as well
        matrix = np.array([[a, 30.0, 4.0, 0.1, 0.2] for a in compared], np.float32)
        p, c = (expected_scores(*WEIGHTS[m], matrix) for m in ("prim", "arm"))
        agree = int(((p >= 0.5) == (c >= 0.5)).sum())
        role = {**arm, "role": "experiment"}
        assert value("sibyl_shadow_decisions_total", {**role, "outcome": "agree"}) == agree
        assert (value("sibyl_shadow_decisions_total", {**role, "outcome": "disagree"}) or 0) == len(compared) - agree
        assert value("sibyl_shadow_abs_delta_sum", role) == pytest.approx(np.abs(c - p).sum(), rel=1e-5)
        # The arm answered every call: those are the predictor's decisions.
        everything = np.array([[a, 30.0, 4.0, 0.1, 0.2] for a in amounts], np.float32)
        positive = int((expected_scores(*WEIGHTS["arm"], everything) >= 0.5).sum())
        assert value("sibyl_decisions_total", {**arm, "decision": "positive"}) == positive
        assert value("sibyl_decisions_total", {**arm, "decision": "negative"}) == len(amounts) - positive
        assert 0 < positive < len(amounts) and 0 < agree < len(compared)
        # The primary, asked as an extra, is the reference, not an answer.
        assert value("sibyl_decisions_total", {**arm, "model": "prim", "decision": "positive"}) is None


async def test_a_slice_the_new_primary_does_not_take_is_refused_at_promote(store: Path) -> None:
    catalog = Catalog(FileStore(store / "store"))
    path = store / "store" / "predictors" / "p.json"
    config = json.loads(path.read_text())
    config["slices"] = [{"name": "rating", "feature": "rating", "edges": [3, 4.5]}]
    path.write_text(json.dumps(config))
    publish_logistic(catalog, "narrow", "1", [1.0], inputs=[FeatureSpec(name="amount")])
    with pytest.raises(ValueError, match="slice 'rating' names feature 'rating', which the primary narrow@1"):
        catalog.promote("p", "narrow@1")
    assert json.loads(path.read_text())["primary"] == "prim@1"
