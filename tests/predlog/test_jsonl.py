"""The fast JSON encoder writes what json_format writes (field set, enum names, int64 as text) and round-trips."""

from __future__ import annotations

import json

import numpy as np
from google.protobuf import json_format

from sibyl.predlog.jsonl import from_json_line, to_json_line
from sibyl.v1.predict_pb2 import DefaultedFeature, EntityColumn, Role
from sibyl.v1.predlog_pb2 import PredictionLog


def full_record() -> PredictionLog:
    rng = np.random.default_rng(0)
    return PredictionLog(
        prediction_id="p1", request_id="r1", predictor="example", model="gbdt", version="1",
        role=Role.ROLE_EXPERIMENT, arm="treatment", sent_at_unix_nanos=1_795_424_828_575_307_796, num_rows=3,
        feature_names=["a", "b"], feature_values=rng.normal(size=6).astype(np.float32).tolist(),
        defaulted=[DefaultedFeature(feature="b", rows=[0, 2]), DefaultedFeature(feature="c")],
        score_dim=1, scores=[0.25, 0.5, 0.75], latency_ms=0.125, context={"consumer_id": "7"},
        row_entities=[EntityColumn(entity="store_id", ids=["1", "2", "3"])], host="h:1",
    )  # fmt: skip


def test_round_trip_is_exact() -> None:
    record = full_record()
    assert from_json_line(to_json_line(record)) == record


def test_same_fields_and_values_as_json_format() -> None:
    record = full_record()
    ours = json.loads(to_json_line(record))
    reference = json_format.MessageToDict(record, preserving_proto_field_name=True)
    assert set(ours) == set(reference)
    for key, value in reference.items():
        if key in ("feature_values", "scores"):  # float32: json_format prints the shortest repr, we the double
            np.testing.assert_array_equal(np.float32(ours[key]), np.float32(value))
        else:
            assert ours[key] == value, key


def test_defaults_are_left_out() -> None:
    assert to_json_line(PredictionLog()) == "{}"
    assert json.loads(to_json_line(PredictionLog(prediction_id="x"))) == {"prediction_id": "x"}


def test_float32_values_are_short_and_exact() -> None:
    """Feature values and scores are printed as the shortest text of the float32, not the widened double."""
    values = np.random.default_rng(1).normal(size=10_000).astype(np.float32)
    record = PredictionLog(feature_values=values.tolist(), scores=values[:10].tolist())
    line = to_json_line(record)
    assert from_json_line(line) == record
    shortest = [float(str(v)) for v in values[:100]]  # numpy's str of a float32 is its shortest round-trip text
    assert json.loads(line)["feature_values"][:100] == shortest
    assert len(line) < 14 * values.size  # the double form takes about 20 characters a value


def test_non_finite_values_are_proto3_strings_and_read_back() -> None:
    nan, inf = float("nan"), float("inf")
    record = PredictionLog(prediction_id="x", feature_values=[1.5, nan, inf, -inf], scores=[nan], latency_ms=inf)
    data = json.loads(to_json_line(record))
    assert data["feature_values"] == [1.5, "NaN", "Infinity", "-Infinity"]
    assert data["scores"] == ["NaN"] and data["latency_ms"] == "Infinity"
    back = from_json_line(to_json_line(record))
    assert back.feature_values[0] == 1.5 and np.isnan(back.feature_values[1]) and back.feature_values[3] == -inf
    assert back.latency_ms == inf


def test_trimmed_is_written() -> None:
    record = PredictionLog(prediction_id="x", scores=[0.5], trimmed=True)
    assert json.loads(to_json_line(record))["trimmed"] is True
    assert from_json_line(to_json_line(record)) == record
