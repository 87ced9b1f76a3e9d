"""The Spark quality job equals the streaming evaluator: a real `sibyl serve` answers and logs (file log), outcomes
are reported over gRPC (OutcomeService.Report, the outcomes file), then (a) sibyl.monitor's Evaluator joins them
in-process, (b) `sibyl predlog archive` writes both as Parquet and sibyl.batch.quality evaluates the archive on
Spark, (c) scikit-learn scores the joined rows. Per model, role and slice: the same n, and AUC, log loss and Brier
to 1e-12 between (a) and (b), to 1e-9 against (c). Slices: a feature with edges and one without (no entity slice:
their rule differs by design, slicing.py). Then the job's join rules on a hand-made log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from sibyl.cli.main import main
from sibyl.client import Client
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec
from sibyl.models.predictor import Slice
from sibyl.models.store import FileStore
from sibyl.monitor.evaluator import Evaluator, Slicers, file_sources
from sibyl.monitor.state import model_parts
from sibyl.process.banner import parse_serving_line
from sibyl.quality.stats import BinaryStats
from sibyl.v1.outcome_pb2 import Outcome, ReportOutcomesRequest
from sibyl.v1.outcome_pb2_grpc import OutcomeServiceStub
from sibyl.v1.predict_pb2 import Role
from tests.batch.log_records import DAY_NS, T0, record, write_log, write_outcomes
from tests.support.inproc import server_env
from tests.support.onnxgen import publish_logistic

INPUTS = [FeatureSpec(name="x1"), FeatureSpec(name="x2"), FeatureSpec(name="is_weekend")]
TRUE = ([2.0, -1.5, 0.8], -0.3)  # the labels come from this model
MODELS = {"mid": ([1.2, -0.4, 0.0], -0.2), "good": TRUE, "bad": ([-0.3, 0.2, 1.5], 0.1)}
EDGES = [-1.0, 0.0, 1.0]
ROWS, CALL, SINGLES = 1_000, 40, 20  # calls of CALL rows, then SINGLES one-row calls (the slices' scalar path)
WEEK_S = 7 * 86_400.0


def build_store(root: Path) -> None:
    catalog = Catalog(FileStore(root))
    for name, (weights, bias) in MODELS.items():
        publish_logistic(catalog, name, "1", weights, bias, inputs=INPUTS)
    catalog.promote("q", "mid@1")
    catalog.set_shadow("q", "good@1", 1.0)
    catalog.set_shadow("q", "bad@1", 1.0)
    path = root / "predictors" / "q.json"
    config = json.loads(path.read_text())
    config["slices"] = [{"name": "weekend", "feature": "is_weekend"}, {"name": "x1", "feature": "x1", "edges": EDGES}]
    path.write_text(json.dumps(config))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A `sibyl serve` over a fresh store, the file log in tmp_path; stopped (its files flushed) after the body."""
    build_store(tmp_path / "store")
    env = server_env(tmp_path, SIBYL_METRICS__PORT="0", SIBYL_LOG_JSON="false")
    serve = subprocess.Popen([sys.executable, "-m", "sibyl", "serve", "--port", "0"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert serve.stdout is not None
    serving = parse_serving_line(serve.stdout.readline())
    try:
        assert serving is not None, "sibyl serve did not start"
        yield {"port": serving.port, "serve": serve}
    finally:
        serve.terminate()
        serve.wait(60)


def traffic(port: int, serve: subprocess.Popen[str]) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """Predictions for ROWS + SINGLES rows; outcomes for 9 rows in 10 (a duplicate with the other label for two, one
    for an unknown id); then the server stops. Returns the rows, their labels and their (prediction_id, row)."""
    rng = np.random.default_rng(29)
    total = ROWS + SINGLES
    x = np.column_stack([rng.normal(0, 1, total), rng.normal(0, 1, total), rng.integers(0, 2, total)])
    x = x.astype(np.float32)
    truth = 1 / (1 + np.exp(-(x.astype(np.float64) @ np.asarray(TRUE[0]) + TRUE[1])))
    y = (rng.random(total) < truth).astype(np.float64)
    ids: list[tuple[str, int]] = []
    with Client(f"127.0.0.1:{port}") as client:
        for start in [*range(0, ROWS, CALL), *range(ROWS, total)]:
            part = x[start : min(start + CALL, ROWS) if start < ROWS else start + 1]
            prediction = client.predict("q", part, feature_names=["x1", "x2", "is_weekend"])
            ids += [(prediction.prediction_id, i) for i in range(part.shape[0])]
    labelled = [i for i in range(total) if i % 10 != 7]
    outcomes = [Outcome(prediction_id=ids[i][0], row=ids[i][1], value=float(y[i])) for i in labelled]
    again = [Outcome(prediction_id=o.prediction_id, row=o.row, value=1.0 - o.value) for o in outcomes[:2]]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = OutcomeServiceStub(channel)
        for start in range(0, len(outcomes), 500):
            stub.Report(ReportOutcomesRequest(outcomes=outcomes[start : start + 500]), timeout=30)
        unknown = Outcome(prediction_id="cd" * 16, row=0, value=1.0)
        stub.Report(ReportOutcomesRequest(outcomes=[*again, unknown]), timeout=30)
    serve.terminate()  # flushes the file log and the outcomes file
    assert serve.wait(60) == 0
    keep = np.zeros(total, bool)
    keep[labelled] = True
    return x[keep], y[keep], [ids[i] for i in labelled]


def stream_stats(tmp: Path) -> dict[tuple[str, str, str, str, str], BinaryStats]:
    """(a) sibyl monitor's evaluator, in-process on the two files, until it has read everything."""
    slicers = Slicers(Catalog(FileStore(tmp / "store")), refresh_s=0.0)
    evaluator = Evaluator(tmp / "monitor", WEEK_S, 1 << 30, slicers,
                          file_sources(tmp / "predictions.jsonl", tmp / "outcomes.jsonl"))  # fmt: skip
    try:
        while evaluator.step():
            pass
        state = evaluator.states[0]
        assert state.counters["joined"] == ROWS + SINGLES - (ROWS + SINGLES) // 10
        assert state.counters["duplicate"] == 2
        merged: dict[tuple[str, str, str, str, str], list[BinaryStats]] = {}
        for (predictor, model, slice_, _hour), stats in state.aggregates.items():
            merged.setdefault((state.text(predictor), *model_parts(state.text(model)), slice_), []).append(stats)
        return {key: BinaryStats.combine(parts) for key, parts in merged.items()}
    finally:
        evaluator.close()


def slice_rows(x: np.ndarray) -> dict[str, np.ndarray]:
    bins = np.searchsorted(np.asarray(EDGES), x[:, 0].astype(np.float64), side="right")
    names = ["x1=<-1", "x1=-1-0", "x1=0-1", "x1=>=1"]
    return {"all": np.ones(len(x), bool), "weekend=1": x[:, 2] == 1, "weekend=0": x[:, 2] == 0} | {
        name: bins == i for i, name in enumerate(names)
    }


def test_spark_job_equals_the_stream_and_scikit_learn(served: dict[str, Any], spark: Any, tmp_path: Path) -> None:
    from sibyl.batch import quality

    x, y, ids = traffic(served["port"], served["serve"])
    stream = stream_stats(tmp_path)

    archive = tmp_path / "archive"
    assert main(["predlog", "archive", str(archive), "--file", str(tmp_path / "predictions.jsonl")]) == 0
    assert main(["predlog", "archive", str(archive), "--outcomes", "--file", str(tmp_path / "outcomes.jsonl")]) == 0
    report = quality.evaluate(spark, str(archive), store_url=f"file://{tmp_path / 'store'}", window_s=WEEK_S)
    batch = report.stats
    assert report.skipped == {}
    assert set(batch) == set(stream), set(batch) ^ set(stream)
    assert len(stream) == len(MODELS) * 7  # all, 2 weekend values, 4 bins of x1
    for key, expected in stream.items():
        got = batch[key]
        assert got.n == expected.n, key
        for metric in ("auc", "log_loss", "brier", "ece", "label_rate"):
            a, b = getattr(got, metric)(), getattr(expected, metric)()
            assert a == pytest.approx(b, abs=1e-12), (key, metric)

    # (c) scikit-learn on the joined rows: each model's logged score of each labelled row.
    log = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    score = {(r["prediction_id"], r["model"]): np.asarray(r["scores"], np.float32) for r in log}
    for model in MODELS:
        s = np.concatenate([score[(pid, model)][row : row + 1] for pid, row in ids]).astype(np.float64)
        role = "primary" if model == "mid" else "shadow"
        for slice_, rows in slice_rows(x).items():
            got = batch[("q", model, "1", role, slice_)]
            assert got.n == int(rows.sum())
            assert got.auc() == pytest.approx(roc_auc_score(y[rows], s[rows]), abs=1e-9)
            assert got.log_loss() == pytest.approx(log_loss(y[rows], s[rows], labels=[0, 1]), abs=1e-9)
            assert got.brier() == pytest.approx(brier_score_loss(y[rows], s[rows]), abs=1e-9)
    by_key = {(r["model"], r["slice"]): r for r in report.rows()}
    assert by_key[("good", "all")]["auc"] > by_key[("mid", "all")]["auc"] > by_key[("bad", "all")]["auc"]


def test_the_spark_jobs_join_rules(spark: Any, tmp_path: Path) -> None:
    """On a hand-made log: the first observed of two outcomes counts; an outcome observed after the window, or for
    a call outside [since, until), does not; a label other than 0/1 is skipped and counted; a call without an
    answering record (a shadow only) counts under "all" alone. A predictor named "007" keeps its name, and records
    of other inputs (feature_x9) merge into one schema."""
    from sibyl.batch import quality

    log, outcomes, archive = tmp_path / "p.jsonl", tmp_path / "o.jsonl", tmp_path / "archive"
    primary = np.array([0.2, 0.4, 0.6, 0.8], np.float32)
    shadow = np.array([0.7, 0.1, 0.5, 0.3], np.float32)
    write_log(log, [record(1, rows=4, scores=primary), record(1, "mlp", Role.ROLE_SHADOW, rows=4, scores=shadow),
                    record(2, "mlp", Role.ROLE_SHADOW, rows=2, scores=shadow[:2]),
                    record(3, rows=4, scores=primary, at=T0 - 2 * DAY_NS),
                    record(4, rows=2, scores=primary[:2], predictor="007", features=("x1", "x9"))])  # fmt: skip
    second = 10**9
    write_outcomes(outcomes, [(1, 0, 1.0, T0 + second), (1, 0, 0.0, T0 + 2 * second), (1, 1, 0.5, T0),
                              (1, 2, 0.0, T0 + 8 * DAY_NS), (1, 3, 0.0, T0), (2, 0, 1.0, T0), (2, 1, 0.0, T0),
                              (3, 0, 1.0, T0), (3, 1, 0.0, T0), (4, 0, 1.0, T0), (4, 1, 0.0, T0)])  # fmt: skip
    assert main(["predlog", "archive", str(archive), "--file", str(log)]) == 0
    assert main(["predlog", "archive", str(archive), "--outcomes", "--file", str(outcomes)]) == 0
    since = datetime.fromtimestamp((T0 - DAY_NS) / 1e9, UTC)
    half = Slice(name="x1", feature="x1", edges=(4.0,))  # call 1's x1 per row: 1, 3, 5, 7
    report = quality.evaluate(spark, str(archive), slices={"eta": [half]}, since=since, window_s=WEEK_S)
    n = {key: stats.n for key, stats in report.stats.items()}
    assert n == {("eta", "gbdt", "1", "primary", "all"): 2, ("eta", "gbdt", "1", "primary", "x1=<4"): 1,
                 ("eta", "gbdt", "1", "primary", "x1=>=4"): 1, ("eta", "mlp", "1", "shadow", "all"): 4,
                 ("eta", "mlp", "1", "shadow", "x1=<4"): 1, ("eta", "mlp", "1", "shadow", "x1=>=4"): 1,
                 ("007", "gbdt", "1", "primary", "all"): 2}  # fmt: skip
    assert report.skipped == {("eta", "gbdt", "1", "primary"): 1, ("eta", "mlp", "1", "shadow"): 1}
    gbdt = report.stats[("eta", "gbdt", "1", "primary", "all")]
    assert gbdt.label_rate() == 0.5 and gbdt.auc() == 0.0  # row 0 (0.2) is the positive, row 3 (0.8) the negative
    mlp = report.stats[("eta", "mlp", "1", "shadow", "all")]
    expected = np.array([0.7, 0.3, 0.7, 0.1], np.float32).astype(np.float64)
    assert mlp.log_loss() == pytest.approx(log_loss([1, 0, 1, 0], expected), abs=1e-12)
