"""Verdicts through a real `sibyl serve`: a primary and a shadow whose scores differ in a known way (two tiny
logistic models), known rows with slices of every kind, and every verdict series checked against the same numbers
computed here from the prediction log alone (records joined on prediction_id; numpy and scipy)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from sibyl.client import Client
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec
from sibyl.models.store import FileStore
from sibyl.observability.metrics import DELTA_BUCKETS, SCORE_BUCKETS
from sibyl.process.banner import parse_serving_line
from tests.support.inproc import server_env, write_features
from tests.support.metric_samples import SampleKey, scraped
from tests.support.metric_samples import key as sample
from tests.support.onnxgen import publish_logistic

INPUTS = [
    FeatureSpec(name="amount"),
    FeatureSpec(name="distance_km"),
    FeatureSpec(name="is_weekend"),
    FeatureSpec(name="rating", entity="store_id", default=4.0),
]
PRIMARY, SHADOW = ([1.2, -0.3, 0.8, 0.4], -1.5), ([1.0, -0.25, 1.1, 0.45], -1.6)
SLICES = [
    {"name": "weekend", "feature": "is_weekend"},
    {"name": "distance", "feature": "distance_km", "edges": [1, 3, 10]},
    {"name": "store", "entity": "store_id", "top": 3},
    {"name": "no_rating", "defaulted": "rating"},
]
HEAVY = ["s1", "s2", "s3"]  # the first call, labelled on its own, makes them the store slice's three labels
RATED = {"s1": 4.8, "s2": 3.9}  # s3 and every other store have no rating in the feature store: defaulted


def build_store(root: Path) -> None:
    catalog = Catalog(FileStore(root))
    publish_logistic(catalog, "prim", "1", *PRIMARY, inputs=INPUTS)
    publish_logistic(catalog, "cand", "1", *SHADOW, inputs=INPUTS)
    catalog.promote("judged", "prim@1")
    catalog.set_shadow("judged", "cand@1", 1.0)
    config = json.loads((root / "predictors" / "judged.json").read_text())
    config.update(slices=SLICES, rank_agreement={"window": 10_000, "every_s": 0}, alert_agreement=0.9)
    (root / "predictors" / "judged.json").write_text(json.dumps(config))


def calls(rng: np.random.Generator) -> Iterator[tuple[np.ndarray, list[str]]]:
    """(rows [n, 3]: amount, distance_km, is_weekend; store id per row), first the call that names the heavy
    stores, then calls of 1 to 60 rows."""
    yield rows(rng, 30), [s for s in HEAVY for _ in range(10)]
    for i in range(60):
        n = int(rng.choice([1, 2, 7, 25, 60]))
        stores = rng.choice([*HEAVY, "s4", "u"], size=n, p=[0.35, 0.25, 0.15, 0.05, 0.2]).tolist()
        yield rows(rng, n), [f"u{i}-{j}" if s == "u" else s for j, s in enumerate(stores)]


def rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.uniform(0, 3, n), rng.uniform(0, 15, n), rng.integers(0, 2, n)]).astype(np.float32)


def scrape(port: int) -> dict[SampleKey, float]:
    return {k: v for k, v in scraped(port).items() if dict(k[1]).get("predictor") == "judged"}


def read_log(path: Path, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= want:
            return [json.loads(line) for line in lines]
        time.sleep(0.2)
    raise AssertionError(f"{len(lines)} of {want} records in the prediction log after 60 s")


def slice_labels(record: dict[str, Any]) -> list[list[str]]:
    """Every row's label per slice, from what the primary's record holds (features as the model saw them, the
    store ids, the rows that used a default)."""
    n, names = record["num_rows"], record["feature_names"]
    matrix = np.asarray(record["feature_values"], np.float32).reshape(n, len(names))
    distance = matrix[:, names.index("distance_km")]
    bins = np.searchsorted([1, 3, 10], distance, side="right")
    bin_names = ["<1", "1-3", "3-10", ">=10"]
    stores = next(c["ids"] for c in record["row_entities"] if c["entity"] == "store_id")
    no_rating = {int(r) for d in record.get("defaulted", []) if d["feature"] == "rating" for r in d.get("rows", [])}
    return [
        [
            "all",
            f"weekend={matrix[i, names.index('is_weekend')]:g}",
            f"distance={bin_names[bins[i]]}",
            f"store={stores[i] if stores[i] in HEAVY else 'other'}",
            f"no_rating={'yes' if i in no_rating else 'no'}",
        ]
        for i in range(n)
    ]


def cumulative(values: np.ndarray, bounds: tuple[float, ...]) -> list[float]:
    return [float((values <= b).sum()) for b in bounds] + [float(values.size)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    build_store(tmp_path / "store")
    features = write_features(
        tmp_path / "features.jsonl",
        [{"entity": "store_id", "id": s, "features": {"rating": r}} for s, r in RATED.items()],
    )
    env = server_env(
        tmp_path,
        SIBYL_FEATURES__BACKEND="memory",
        SIBYL_FEATURES__MEMORY_FILE=str(features),
        SIBYL_METRICS__PORT="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sibyl", "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    serving = parse_serving_line(proc.stdout.readline())
    try:
        assert serving is not None and serving.metrics_port, "sibyl serve did not start"
        yield serving.port, serving.metrics_port, tmp_path / "predictions.jsonl"
    finally:
        proc.terminate()
        proc.wait(30)


def wait_for_rows(metrics_port: int, rows: int) -> None:
    """Until the verdicts have counted `rows` rows (a scrape flushes what the records thread handed over): the
    server labels the calls pending at a flush together, and the first call must be labelled on its own."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counted = sum(v for k, v in scrape(metrics_port).items()
                      if k[0] == "sibyl_decisions_total" and dict(k[1]).get("slice") == "all")  # fmt: skip
        if counted >= rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"the verdicts did not count the first call's {rows} rows within 60 s")


def test_every_verdict_series_equals_the_prediction_log(server: tuple[int, int, Path]) -> None:
    port, metrics_port, log_path = server
    rng = np.random.default_rng(11)
    sent = 0
    with Client(f"127.0.0.1:{port}") as client:
        for matrix, stores in calls(rng):
            client.predict(
                "judged",
                matrix,
                feature_names=["amount", "distance_km", "is_weekend"],
                entities={"store_id": stores},
            )
            sent += 1
            if sent == 1:
                wait_for_rows(metrics_port, len(stores))
    records = read_log(log_path, 2 * sent)  # the primary's record and the shadow's, per call
    metrics = scrape(metrics_port)

    by_id: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        by_id[r["prediction_id"]][r["role"]] = r
    assert len(by_id) == sent
    labels: list[list[str]] = []
    primary: list[float] = []
    shadow: list[float] = []
    for pair in by_id.values():
        p, s = pair["ROLE_PRIMARY"], pair["ROLE_SHADOW"]
        assert (p["model"], s["model"]) == ("prim", "cand")
        labels += slice_labels(p)
        primary += p["scores"]
        shadow += s["scores"]
    p_scores, s_scores = np.asarray(primary, np.float32), np.asarray(shadow, np.float32)
    delta = np.abs(s_scores - p_scores).astype(np.float64)  # as the server computes it, in float32
    agree = (s_scores >= 0.5) == (p_scores >= 0.5)
    assert 0 < agree.sum() < agree.size, "the test models must disagree on some rows"

    seen_slices: set[str] = set()
    for column in range(len(SLICES) + 1):
        for label in sorted({row[column] for row in labels}):
            seen_slices.add(label)
            rows = np.array([row[column] == label for row in labels])
            shadow_of = {"predictor": "judged", "model": "cand", "version": "1", "role": "shadow", "slice": label}
            counts = [metrics.get(sample("sibyl_shadow_abs_delta_bucket", **shadow_of, le=str(b)), 0.0)
                      for b in [*DELTA_BUCKETS, "+Inf"]]  # fmt: skip
            assert counts == cumulative(delta[rows], DELTA_BUCKETS), label
            got_sum = metrics[sample("sibyl_shadow_abs_delta_sum", **shadow_of)]
            assert got_sum == pytest.approx(delta[rows].sum(), rel=1e-5)
            for outcome, expected in (("agree", agree[rows].sum()), ("disagree", (~agree[rows]).sum())):
                got = metrics.get(sample("sibyl_shadow_decisions_total", **shadow_of, outcome=outcome), 0.0)
                assert got == expected, (label, outcome)
            rho = stats.spearmanr(p_scores[rows], s_scores[rows]).statistic
            if rows.sum() >= 10 and np.isfinite(rho):
                gauge = sample(
                    "sibyl_shadow_rank_agreement", predictor="judged", model="cand", version="1", slice=label
                )
                assert metrics[gauge] == pytest.approx(rho, abs=1e-9), label
            answer = {"predictor": "judged", "model": "prim", "version": "1", "slice": label}
            positive = int((p_scores[rows] >= 0.5).sum())
            for decision, expected in (("positive", positive), ("negative", int(rows.sum()) - positive)):
                got = metrics.get(sample("sibyl_decisions_total", **answer, decision=decision), 0.0)
                assert got == expected, (label, decision)
            score_counts = [metrics.get(sample("sibyl_slice_score_bucket", **answer, le=str(float(b))), 0.0)
                            for b in SCORE_BUCKETS]  # fmt: skip
            assert score_counts == cumulative(p_scores[rows].astype(np.float64), SCORE_BUCKETS)[:-1], label

    exported = {dict(k[1])["slice"] for k in metrics if k[0] == "sibyl_shadow_decisions_total"}
    assert exported == seen_slices  # no slice the log does not show, none missing
    assert Counter(label.split("=")[0] for label in exported)["store"] == 4  # s1, s2, s3, other
    assert metrics[sample("sibyl_predictor_setting", predictor="judged", setting="alert_agreement")] == 0.9

    # The operator's view of the same numbers: `sibyl models shadow-report` against the server's metrics port.
    shown = subprocess.run(
        [sys.executable, "-m", "sibyl", "models", "shadow-report", "judged", "--target", f"127.0.0.1:{metrics_port}",
         "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(shown.stdout)
    (candidate,) = report["candidates"]
    assert (candidate["model"], candidate["role"]) == ("cand", "shadow")
    everything = candidate["slices"][0]
    assert everything["slice"] == "all" and everything["rows"] == p_scores.size
    assert everything["agreement"] == pytest.approx(agree.mean(), abs=1e-12)
    assert everything["delta_mean"] == pytest.approx(delta.mean(), rel=1e-5)
    assert everything["rank_agreement"] == pytest.approx(stats.spearmanr(p_scores, s_scores).statistic, abs=1e-9)
    assert {r["slice"] for r in candidate["slices"]} == seen_slices
    (answering,) = report["answering"]
    assert answering["slices"][0]["positive_rate"] == pytest.approx((p_scores >= 0.5).mean(), abs=1e-12)
    text = subprocess.run(
        [sys.executable, "-m", "sibyl", "models", "shadow-report", "judged", "--target", f"127.0.0.1:{metrics_port}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "cand@1 (shadow) vs primary of judged" in text and "store=other" in text


def test_slice_labels_stay_bounded_with_a_hundred_thousand_stores(server: tuple[int, int, Path]) -> None:
    port, metrics_port, _ = server
    rng = np.random.default_rng(5)
    with Client(f"127.0.0.1:{port}") as client:
        for call in range(20):
            stores = [f"c{call}-{i}" for i in range(5_000)]  # 100,000 distinct store ids in all
            client.predict(
                "judged",
                rows(rng, len(stores)),
                feature_names=["amount", "distance_km", "is_weekend"],
                entities={"store_id": stores},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every shadow compared: 100,000 rows in the "all" slice
            metrics = scrape(metrics_port)
            key = sample("sibyl_shadow_abs_delta_count", predictor="judged", model="cand", version="1", role="shadow",
                         slice="all")  # fmt: skip
            if metrics.get(key) == 100_000:
                break
            time.sleep(0.5)
    store_labels = {dict(k[1])["slice"] for k in metrics if k[0].startswith("sibyl_") and "store=" in str(k[1])}
    assert store_labels == {"store=other"}  # at most top + 1; none of these ids is a heavy hitter
    assert metrics[key] == 100_000
