import numpy as np

from sibyl.models.manifest import FeatureSpec, Manifest, OutputSpec
from sibyl.models.runtime import OnnxModel
from sibyl.serving import assembly
from sibyl.serving.decode import Limits, decode
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest
from tests.support.onnxgen import logistic_onnx


def model(name: str, inputs: list[FeatureSpec]) -> OnnxModel:
    import hashlib

    data = logistic_onnx([0.1] * sum(f.dim for f in inputs))
    manifest = Manifest(
        name=name,
        version="1",
        input_name="input",
        inputs=inputs,
        output=OutputSpec(name="probabilities", column=1),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return OnnxModel(manifest, data)


A = model(
    "a",
    [
        FeatureSpec(name="amount"),
        FeatureSpec(name="age", entity="consumer_id", default=30),
        FeatureSpec(name="rating", entity="store_id", default=4),
    ],
)
B = model(
    "b",
    [
        FeatureSpec(name="rating", entity="store_id", default=3),  # same feature, another default
        FeatureSpec(name="emb", entity="consumer_id", dtype="float_vector", dim=2, default=(0.1, 0.2)),
    ],
)


def request() -> PredictRequest:
    values = np.array([[5, np.nan], [6, 4.5], [7, np.nan]], "<f4")  # rating given for row 1 only
    return PredictRequest(
        predictor="p",
        context={"consumer_id": "c1"},
        dense=DenseRows(feature_names=["amount", "rating"], values=values.tobytes(), num_rows=3),
        row_entities=[EntityColumn(entity="store_id", ids=["s1", "s2", "s3"])],
    )


def test_plan_dedupes_across_rows_and_models() -> None:
    batch = decode(request(), Limits())
    p = assembly.plan(batch, [A, B])
    wanted = {k: sorted(s.name for s in v) for k, v in p.wanted.items()}
    # consumer features once (shared id); store rating only for rows missing it (s1, s3), not s2.
    assert wanted == {
        ("consumer_id", "c1"): ["age", "emb"],
        ("store_id", "s1"): ["rating"],
        ("store_id", "s3"): ["rating"],
    }
    assert p.from_request == 3 + 1


def test_fill_then_defaults_per_model() -> None:
    batch = decode(request(), Limits())
    p = assembly.plan(batch, [A, B])
    fetched = {
        ("consumer_id", "c1"): {"age": 41.0, "emb": np.array([1.0, 2.0], np.float32)},
        ("store_id", "s1"): {"rating": 4.9},
    }
    assert assembly.fill(p, batch, fetched) == 3 + 3 + 1  # age x3 rows, emb x3 rows, rating row 0
    assert {k: v.tolist() for k, v in assembly.defaulted(p).items()} == {"rating": [2]}
    ma = assembly.matrix(p, A)
    mb = assembly.matrix(p, B)
    np.testing.assert_allclose(ma, [[5, 41, 4.9], [6, 41, 4.5], [7, 41, 4]], rtol=1e-6)  # A's default 4
    np.testing.assert_allclose(mb, [[4.9, 1, 2], [4.5, 1, 2], [3, 1, 2]], rtol=1e-6)  # B's default 3
    assert ma.dtype == np.float32 and ma.flags["C_CONTIGUOUS"]


def test_nothing_fetched_means_all_defaults() -> None:
    batch = decode(request(), Limits())
    p = assembly.plan(batch, [B])
    assembly.fill(p, batch, {})
    np.testing.assert_allclose(assembly.matrix(p, B)[:, 1:], [[0.1, 0.2]] * 3, rtol=1e-6)
    assert assembly.defaulted(p)["emb"].tolist() == [0, 1, 2]


def dense(names: list[str], values: np.ndarray) -> PredictRequest:
    dense_rows = DenseRows(feature_names=names, values=values.astype("<f4").tobytes(), num_rows=values.shape[0])
    return PredictRequest(predictor="p", context={"consumer_id": "c1"}, dense=dense_rows)


def test_every_column_in_another_order_is_complete_and_gathered_into_layout_order() -> None:
    """Map rows give their columns in the map's order: the plan gathers them into the models' layout and, with
    nothing missing, fetches nothing and defaults nothing; one NaN takes the general path."""
    order = ["emb[1]", "rating", "extra", "age", "emb[0]", "amount"]  # "extra": a column no model takes
    values = np.arange(12, dtype=np.float32).reshape(2, 6)
    p = assembly.plan(decode(dense(order, values), Limits()), [A, B])
    expected = values[:, [order.index(c) for c in p.layout.columns]]
    assert p.complete and not p.wanted and not p.missing.any()
    assert p.from_request == 2 * len(p.layout.specs)
    np.testing.assert_array_equal(p.values, expected)
    assert assembly.defaulted(p) == {}

    values[1, order.index("age")] = np.nan
    p = assembly.plan(decode(dense(order, values), Limits()), [A, B])
    assert not p.complete
    assert p.wanted == {("consumer_id", "c1"): [A.manifest.inputs[1]]}
    assert p.from_request == 2 * len(p.layout.specs) - 1


def ids_only(store_ids: list[str], names: tuple[str, ...] = ()) -> PredictRequest:
    """Rows that carry only ids (what a Feast-style caller sends); `names` adds given-but-NaN columns."""
    values = np.full((len(store_ids), len(names)), np.nan, "<f4")
    return PredictRequest(
        predictor="p",
        context={"consumer_id": "c1"},
        dense=DenseRows(feature_names=list(names), values=values.tobytes(), num_rows=len(store_ids)),
        row_entities=[EntityColumn(entity="store_id", ids=store_ids)],
    )


def test_a_request_of_ids_only_plans_and_fills_as_the_general_path_does() -> None:
    """The ids-only shortcut (no NaN scan) and the 1-row id shortcut give what the general path gives: the same
    wanted ids, missing cells, counts, filled matrices and defaults, for 1 and 3 rows."""
    fetched = {
        ("consumer_id", "c1"): {"age": 41.0, "emb": np.array([1.0, 2.0], np.float32)},
        ("store_id", "s1"): {"rating": 4.9},
        ("store_id", "s3"): {"rating": 3.5},
    }
    for ids in (["s1"], ["s2"], [""], ["s1", "s2", "s3"]):
        general = decode(ids_only(ids, ("amount",)), Limits())  # a NaN column given: the general path
        short = decode(ids_only(ids), Limits())
        plans = [assembly.plan(b, [A, B]) for b in (general, short)]
        assert plans[0].wanted == plans[1].wanted and plans[0].from_request == plans[1].from_request == 0
        np.testing.assert_array_equal(plans[0].missing, plans[1].missing)
        counts = [assembly.fill(p, b, fetched) for p, b in zip(plans, (general, short), strict=True)]
        assert counts[0] == counts[1]
        for m in (A, B):
            np.testing.assert_array_equal(assembly.matrix(plans[0], m), assembly.matrix(plans[1], m))
        defaults = [{k: v.tolist() for k, v in assembly.defaulted(p).items()} for p in plans]
        assert defaults[0] == defaults[1]
    p = assembly.plan(decode(ids_only(["s1"]), Limits()), [A, B])
    assert p.wanted == {("consumer_id", "c1"): [A.manifest.inputs[1], B.manifest.inputs[1]],
                        ("store_id", "s1"): [A.manifest.inputs[2]]}  # fmt: skip
    p = assembly.plan(decode(ids_only([""]), Limits()), [A, B])
    assert ("store_id", "") not in p.wanted  # a row without an id asks the store nothing for that entity


def test_missing_cells_agree_on_both_sides_of_the_reduceat_threshold() -> None:
    """Plan.refresh_missing takes one reduceat up to REDUCEAT_MAX_ROWS rows and a per-wide-feature pass above:
    both equal 'any column of the feature is NaN', computed here column by column."""
    rng = np.random.default_rng(7)
    names = ["amount", "age", "rating", "emb[0]", "emb[1]"]
    for rows in (1, assembly.REDUCEAT_MAX_ROWS, assembly.REDUCEAT_MAX_ROWS + 1):
        values = rng.random((rows, len(names)), dtype=np.float32)
        values[rng.random(values.shape) < 0.3] = np.nan
        p = assembly.plan(decode(dense(names, values), Limits()), [A, B])
        nan = np.isnan(p.values)
        expected = np.stack(
            [nan[:, [p.layout.columns.index(c) for c in spec.columns]].any(axis=1) for spec in p.layout.specs], axis=1
        )
        np.testing.assert_array_equal(p.missing, expected)
