"""Slice assignment (serving.slices) and slice settings (models.predictor.Slice, check_slices)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pytest
from pydantic import ValidationError

from sibyl.errors import InvalidArgument
from sibyl.models.manifest import FeatureSpec
from sibyl.models.predictor import PredictorConfig, Slice, check_slices
from sibyl.serving.decode import CodedIds
from sibyl.serving.slice_rows import MergedRows, Snapshot
from sibyl.serving.slices import Slicer


@dataclass
class Rows:
    num_rows: int
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, str | CodedIds] = field(default_factory=dict)
    defaulted: Mapping[str, np.ndarray] = field(default_factory=dict)
    uncoded: bool = False  # row_ids gives per-row ids as a plain list (a served call's, not coded yet)

    def column(self, feature: str) -> np.ndarray | None:
        return self.columns.get(feature)

    def entity_ids(self, entity: str) -> str | CodedIds | None:
        return self.ids.get(entity)

    def first_value(self, feature: str) -> float:
        column = self.columns.get(feature)
        return math.nan if column is None else float(column[0])

    def first_id(self, entity: str) -> str:
        ids = self.ids.get(entity)
        return ids.values[int(ids.codes[0])] if isinstance(ids, CodedIds) else ids or ""

    def row_ids(self, entity: str) -> str | CodedIds | list[str] | None:
        ids = self.ids.get(entity)
        return ids.rows() if isinstance(ids, CodedIds) and self.uncoded else ids


def slicer(*slices: dict[str, object]) -> Slicer:
    s = Slicer()
    s.configure([Slice.model_validate(x) for x in slices])
    return s


def names(s: Slicer, labels: np.ndarray) -> list[list[str]]:
    return [[s.vocabulary.names[i] for i in row] for row in labels.tolist()]


def test_edges_bin_rows_and_missing() -> None:
    s = slicer({"name": "distance", "feature": "d", "edges": [1, 3, 10]})
    rows = Rows(6, {"d": np.array([0.5, 1.0, 2.9, 3.0, 11.0, np.nan], np.float32)})
    assert names(s, s.assign(rows)) == [
        ["all"] * 6,
        ["distance=<1", "distance=1-3", "distance=1-3", "distance=3-10", "distance=>=10", "distance=missing"],
    ]


def test_values_are_bounded_by_top() -> None:
    s = slicer({"name": "hour", "feature": "h", "top": 2})
    labels = s.assign(Rows(5, {"h": np.array([1, 0, 1, 7, np.nan], np.float32)}))
    assert names(s, labels)[1] == ["hour=1", "hour=0", "hour=1", "hour=other", "hour=missing"]


def test_defaulted_marks_the_rows_that_used_the_default() -> None:
    s = slicer({"name": "no_rating", "defaulted": "rating"})
    labels = s.assign(Rows(4, defaulted={"rating": np.array([1, 3])}))
    assert names(s, labels)[1] == ["no_rating=no", "no_rating=yes", "no_rating=no", "no_rating=yes"]


def test_heavy_entities_get_labels_and_the_rest_other() -> None:
    s = slicer({"name": "store", "entity": "store_id", "top": 2})
    ids = ["big"] * 10 + ["mid"] * 6 + ["rare"] * 2 + [""]
    labels = s.assign(Rows(len(ids), ids={"store_id": CodedIds.of(ids)}))
    assert names(s, labels)[1] == ["store=big"] * 10 + ["store=mid"] * 6 + ["store=other"] * 2 + ["store=none"]
    # A shared id for every row of a call, and no id at all.
    assert names(s, s.assign(Rows(2, ids={"store_id": "big"})))[1] == ["store=big"] * 2
    assert names(s, s.assign(Rows(1)))[1] == ["store=none"]


def test_a_hundred_thousand_distinct_ids_make_at_most_top_plus_one_labels() -> None:
    top = 20
    s = slicer({"name": "store", "entity": "store_id", "top": top})
    rng = np.random.default_rng(3)
    seen: set[str] = set()
    for call in range(200):
        ids = [f"s{call}-{i}" for i in range(1_000)]  # the second half of each call: 100,000 distinct ids
        ids[:500] = [f"hot{j}" for j in rng.integers(0, 10, 500)]  # and 10 heavy ones, ~5% of the rows each
        labels = s.assign(Rows(len(ids), ids={"store_id": CodedIds.of(ids)}))
        seen |= set(names(s, labels)[1])
    assert len(seen) <= top + 1
    assert "store=other" in seen
    assert {f"store=hot{j}" for j in range(10)} <= seen  # the heavy hitters got their own labels
    assert s.active[0].sketch.shape == (2, 4096)  # type: ignore[union-attr]  # memory stays bounded


def test_slice_state_survives_a_config_change_that_keeps_the_slice() -> None:
    spec = {"name": "store", "entity": "store_id", "top": 1}
    s = slicer(spec)
    s.assign(Rows(10, ids={"store_id": "a"}))
    s.configure([Slice.model_validate(spec), Slice.model_validate({"name": "w", "feature": "w"})])
    labels = s.assign(Rows(10, {"w": np.zeros(10, np.float32)}, ids={"store_id": "b"}))
    assert names(s, labels)[1] == ["store=other"] * 10  # a's label stays; the one slot is taken


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x"},
        {"name": "x", "feature": "a", "entity": "e"},
        {"name": "x", "entity": "e", "edges": [1]},
        {"name": "x", "feature": "a", "edges": [3, 1]},
        {"name": "Bad name", "feature": "a"},
    ],
)
def test_slice_settings_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Slice.model_validate(bad)


def test_slice_names_are_unique_and_not_all() -> None:
    for slices in ([{"name": "a", "feature": "x"}, {"name": "a", "feature": "y"}], [{"name": "all", "feature": "x"}]):
        with pytest.raises(ValidationError, match="unique"):
            PredictorConfig.model_validate({"name": "p", "primary": "m@1", "slices": slices})


def test_check_slices_refuses_what_the_primary_does_not_take() -> None:
    inputs = [FeatureSpec(name="d"), FeatureSpec(name="r", entity="store_id"), FeatureSpec(
        name="v", dtype="float_vector", dim=2, default=(0.0, 0.0))]  # fmt: skip
    check_slices([Slice(name="ok", feature="d"), Slice(name="s", entity="store_id")], inputs, "m@1")
    for bad, words in [
        (Slice(name="x", feature="nope"), "does not take"),
        (Slice(name="x", defaulted="nope"), "does not take"),
        (Slice(name="x", entity="consumer_id"), "no input"),
        (Slice(name="x", feature="v"), "vector"),
    ]:
        with pytest.raises(InvalidArgument, match=words):
            check_slices([bad], inputs, "m@1")


def test_one_row_calls_take_the_scalar_path_with_the_same_labels() -> None:
    specs = [
        {"name": "distance", "feature": "d", "edges": [1, 3, 10]},
        {"name": "hour", "feature": "h", "top": 3},
        {"name": "store", "entity": "store_id", "top": 2},
        {"name": "no_rating", "defaulted": "rating"},
    ]
    rng = np.random.default_rng(8)
    n = 400
    d = rng.uniform(0, 12, n).astype(np.float32)
    d[::37] = np.nan
    h = rng.integers(0, 6, n).astype(np.float32)
    stores = rng.choice(["a", "b", "c", ""], n, p=[0.5, 0.3, 0.15, 0.05]).tolist()
    used = np.flatnonzero(rng.random(n) < 0.2)
    whole, single = slicer(*specs), slicer(*specs)
    # The same stream of calls: once as one n-row call, once as n 1-row calls (per-row ids and shared ids).
    expected = names(
        whole, whole.assign(Rows(n, {"d": d, "h": h}, {"store_id": CodedIds.of(stores)}, {"rating": used}))
    )
    got: list[list[str]] = [[] for _ in specs] + [[]]
    for i in range(n):
        ids: dict[str, str | CodedIds] = {"store_id": stores[i]} if i % 2 else {"store_id": CodedIds.of([stores[i]])}
        row = Rows(1, {"d": d[i : i + 1], "h": h[i : i + 1]}, ids, {"rating": np.array([0])} if i in used else {})
        for k, label in enumerate(names(single, single.assign(row))):
            got[k] += label
    assert got[:3] == expected[:3] and got[4] == expected[4]
    # Heavy hitters: one call sees the counts at once, single rows see them grow; both label at most `top`.
    assert set(got[3]) <= {"store=a", "store=b", "store=other", "store=none"}


def test_merged_calls_get_the_labels_of_one_call_of_all_their_rows() -> None:
    """Verdicts label every pending call at once (MergedRows): the same labels as one call holding the same rows,
    whatever form each call's ids came in, a feature no call had, and defaults at the right rows."""
    specs = [
        {"name": "distance", "feature": "d", "edges": [1, 3, 10]},
        {"name": "hour", "feature": "h", "top": 3},
        {"name": "store", "entity": "store_id", "top": 2},
        {"name": "no_rating", "defaulted": "rating"},
        {"name": "absent", "feature": "nobody_sends_it", "edges": [0]},
    ]
    rng = np.random.default_rng(9)
    sizes = [1, 5, 1, 30, 2, 1, 12]
    n = sum(sizes)
    d = rng.uniform(0, 12, n).astype(np.float32)
    h = rng.integers(0, 6, n).astype(np.float32)
    stores = rng.choice(["a", "b", "c", ""], n, p=[0.5, 0.3, 0.15, 0.05]).tolist()
    used = np.flatnonzero(rng.random(n) < 0.3)
    whole, merged = slicer(*specs), slicer(*specs)
    expected = names(
        whole, whole.assign(Rows(n, {"d": d, "h": h}, {"store_id": CodedIds.of(stores)}, {"rating": used}))
    )
    parts: list[Rows] = []
    start = 0
    for k, size in enumerate(sizes):
        end = start + size
        part_ids = stores[start:end]
        ids: dict[str, str | CodedIds] = {}
        if len(set(part_ids)) == 1 and k % 2:
            ids["store_id"] = part_ids[0]  # one id for the whole call
        elif any(part_ids):
            ids["store_id"] = CodedIds.of(part_ids)
        # else: no id in the call at all (every row "none")
        defaulted = {"rating": used[(used >= start) & (used < end)] - start}
        parts.append(Rows(size, {"d": d[start:end], "h": h[start:end]}, ids, defaulted, uncoded=k % 3 == 0))
        start = end
    rows = MergedRows([Snapshot(part, merged.active) for part in parts])  # 1-row calls keep scalars
    assert rows.num_rows == n and rows.offsets == np.cumsum([0, *sizes]).tolist()
    assert names(merged, merged.assign(rows)) == expected
    assert set(expected[5]) == {"absent=missing"}
