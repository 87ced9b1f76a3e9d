"""Drift PSI by slice through a real `sibyl serve`: a model published with baselines, traffic that drifts on
weekend rows only, and every `sibyl_slice_drift_psi` (and `sibyl_drift_psi`) series checked against PSI computed
here from the prediction log alone (the logged inputs and scores, the manifest's baseline histograms, numpy).

When the gauges move: the drift monitor exports every 1,000 observed rows, from the rows' own thread, while the
slice counts arrive with the verdicts' flush. So the test sends 1,800 rows, waits until a scrape has flushed them
all, then sends 200 more: that call's export shows the overall PSI of all 2,000 rows and each slice's PSI of the
first 1,800 (docs/observability.md, drift)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sibyl.client import Client
from sibyl.models.baseline import compute_baselines
from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec, OutputSpec
from sibyl.models.store import FileStore
from tests.support.inproc import serve_subprocess
from tests.support.metric_samples import SampleKey, scraped
from tests.support.metric_samples import key as sample
from tests.support.onnxgen import logistic_onnx

INPUTS = [FeatureSpec(name="amount"), FeatureSpec(name="distance_km"), FeatureSpec(name="is_weekend")]
NAMES = [spec.name for spec in INPUTS]
WEIGHTS, BIAS = [1.2, -0.3, 0.8], -1.5
SLICES = [{"name": "weekend", "feature": "is_weekend"}]
FIRST, LAST, PER_CALL = 1_800, 200, 50  # rows before the flush and in the call whose export is checked
EPSILON = 1e-4  # the documented floor of a bin's share


def traffic(rng: np.random.Generator, n: int, drifted: bool) -> np.ndarray:
    weekend = rng.integers(0, 2, n).astype(np.float32)
    amount = rng.uniform(0, 3, n) + (1.5 * weekend if drifted else 0.0)  # weekend amounts drift up
    return np.column_stack([amount, rng.uniform(0, 15, n), weekend]).astype(np.float32)


def build_store(root: Path) -> None:
    catalog = Catalog(FileStore(root))
    sample_rows = traffic(np.random.default_rng(1), 5_000, drifted=False)
    scores = 1 / (1 + np.exp(-(sample_rows.astype(np.float64) @ WEIGHTS + BIAS)))
    catalog.publish(
        "prim", "1", logistic_onnx(WEIGHTS, BIAS), INPUTS, OutputSpec(name="probabilities", column=1),
        baselines=compute_baselines(INPUTS, sample_rows, scores),
    )  # fmt: skip
    catalog.promote("drifty", "prim@1")
    config = json.loads((root / "predictors" / "drifty.json").read_text())
    config.update(slices=SLICES)
    (root / "predictors" / "drifty.json").write_text(json.dumps(config))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int, Path, Path]]:
    build_store(tmp_path / "store")  # beside the support store's predictor "p", which gets no calls here
    proc, port, metrics_port = serve_subprocess(tmp_path, SIBYL_METRICS__PORT="0", SIBYL_METRICS__DRIFT_SAMPLE="1.0")
    try:
        assert metrics_port, "sibyl serve printed no metrics port"
        yield port, metrics_port, tmp_path / "predictions.jsonl", tmp_path / "store"
    finally:
        proc.terminate()
        proc.wait(30)


def counted_rows(metrics_port: int) -> float:
    """Rows the verdicts counted (a scrape flushes what is pending first, drift slices included)."""
    return sum(v for k, v in scraped(metrics_port).items()
               if k[0] == "sibyl_decisions_total" and dict(k[1]).get("slice") == "all")  # fmt: skip


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within 60 s: {what}")


def read_log(path: Path, want: int) -> list[dict[str, Any]]:
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= want, f"{want} logged records")
    return [json.loads(line) for line in path.read_text().splitlines()]


def psi(baseline: dict[str, list[float]], values: np.ndarray) -> float:
    """PSI of `values` against one baseline histogram: bin i holds edges[i] <= v < edges[i + 1], the outer bins
    open-ended; shares floored at EPSILON."""
    edges, expected = np.asarray(baseline["edges"]), np.asarray(baseline["counts"], np.float64)
    bins = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, expected.size - 1)
    actual = np.bincount(bins, minlength=expected.size).astype(np.float64)
    p = np.maximum(expected / expected.sum(), EPSILON)
    q = np.maximum(actual / actual.sum(), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def expected_psi(manifest: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, float]:
    """PSI per input and "__prediction__" over the records' rows, as the model saw them (float32)."""
    matrix = np.concatenate([
        np.asarray(r["feature_values"], np.float32).reshape(r["num_rows"], len(r["feature_names"]))
        [:, [r["feature_names"].index(n) for n in NAMES]] for r in records
    ]).astype(np.float64)  # fmt: skip
    scores = np.concatenate([np.asarray(r["scores"], np.float32) for r in records]).astype(np.float64)
    baselines = manifest["baselines"]
    out = {name: psi(baselines["features"][name], matrix[:, k]) for k, name in enumerate(NAMES)}
    out["__prediction__"] = psi(baselines["prediction"], scores)
    return out


def weekend_rows(record: dict[str, Any], weekend: float) -> dict[str, Any]:
    """The record cut to its rows with is_weekend == weekend (the slice's label), in order."""
    n, names = record["num_rows"], record["feature_names"]
    matrix = np.asarray(record["feature_values"], np.float32).reshape(n, len(names))
    keep = matrix[:, names.index("is_weekend")] == weekend
    return {
        "num_rows": int(keep.sum()),
        "feature_names": names,
        "feature_values": matrix[keep].ravel().tolist(),
        "scores": np.asarray(record["scores"], np.float32)[keep].tolist(),
    }


def test_slice_drift_psi_equals_the_prediction_log(server: tuple[int, int, Path, Path]) -> None:
    port, metrics_port, log_path, store = server
    rng = np.random.default_rng(7)
    with Client(f"127.0.0.1:{port}") as client:
        for _ in range(FIRST // PER_CALL):
            client.predict("drifty", traffic(rng, PER_CALL, drifted=True), feature_names=NAMES)
        wait_until(lambda: counted_rows(metrics_port) >= FIRST, f"the verdicts to count {FIRST} rows")
        client.predict("drifty", traffic(rng, LAST, drifted=True), feature_names=NAMES)
    records = read_log(log_path, FIRST // PER_CALL + 1)
    assert sum(r["num_rows"] for r in records) == FIRST + LAST
    records.sort(key=lambda r: r["num_rows"] == LAST)  # the last call's record last (the rest keep their order)
    manifest = json.loads((store / "models" / "prim" / "1" / "manifest.json").read_text())
    wait_until(lambda: any(k[0] == "sibyl_slice_drift_psi" for k in scraped(metrics_port)), "the slice drift gauges")
    metrics: dict[SampleKey, float] = scraped(metrics_port)

    overall = expected_psi(manifest, records)
    for feature, value in overall.items():
        got = metrics[sample("sibyl_drift_psi", model="prim", version="1", feature=feature)]
        assert got == pytest.approx(value, rel=1e-6, abs=1e-9), feature
    by_slice: dict[str, dict[str, float]] = {}
    for weekend in (0.0, 1.0):
        first = [weekend_rows(r, weekend) for r in records[:-1]]
        by_slice[f"weekend={weekend:g}"] = expected_psi(manifest, first)
    exported = {dict(k[1])["slice"] for k in metrics if k[0] == "sibyl_slice_drift_psi"}
    assert exported == set(by_slice)
    for label, values in by_slice.items():
        for feature, value in values.items():
            key = sample("sibyl_slice_drift_psi", model="prim", version="1", slice=label, feature=feature)
            assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (label, feature)
    # The drift is where the traffic put it: weekend amounts moved, weekday ones did not.
    assert by_slice["weekend=1"]["amount"] > 0.25 > by_slice["weekend=0"]["amount"]
