import numpy as np
import pytest

from sibyl.errors import InvalidArgument
from sibyl.serving.decode import Limits, decode
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, FeatureRow, FloatVector, PredictRequest

LIMITS = Limits(max_rows=100, max_models=3, max_name_length=32)


def dense(names: list[str], values: np.ndarray, **kw: object) -> PredictRequest:
    data = np.asarray(values, "<f4")
    return PredictRequest(
        predictor="p", dense=DenseRows(feature_names=names, values=data.tobytes(), num_rows=data.shape[0]), **kw
    )


def test_dense_decodes_without_copy_semantics_leaking() -> None:
    batch = decode(dense(["a", "b"], [[1, 2], [3, 4], [5, 6]]), LIMITS)
    assert batch.num_rows == 3 and batch.names == ["a", "b"]
    assert batch.values.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_map_rows_union_names_and_mark_absent_as_nan() -> None:
    request = PredictRequest(
        predictor="p",
        rows=[
            FeatureRow(features={"a": 1}, entities={"store_id": "s1"}),
            FeatureRow(features={"b": 2}, vectors={"emb": FloatVector(values=[0.5, 0.25])}),
        ],
        context={"consumer_id": "c"},
    )
    batch = decode(request, LIMITS)
    assert batch.names == ["a", "b", "emb[0]", "emb[1]"]
    assert np.isnan(batch.values[0, 1]) and batch.values[1, 1] == 2
    assert batch.values[1, 2:].tolist() == [0.5, 0.25]
    assert batch.entity_ids("consumer_id") == "c"
    assert batch.entity_ids("store_id").rows() == ["s1", ""]
    assert batch.entity_ids("other") is None


def test_row_entities_fall_back_to_context() -> None:
    request = dense(
        ["a"],
        [[1], [2]],
        context={"store_id": "default"},
        row_entities=[EntityColumn(entity="store_id", ids=["s1", ""])],
    )
    assert decode(request, LIMITS).entity_ids("store_id").rows() == ["s1", "default"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (PredictRequest(rows=[FeatureRow()]), "predictor is required"),
        (PredictRequest(predictor="p"), "no rows"),
        (PredictRequest(predictor="p", rows=[FeatureRow()] * 101), "at most 100"),
        (PredictRequest(predictor="p", rows=[FeatureRow()], extra_models=["a", "b", "c"]), "at most 3"),
        (PredictRequest(predictor="p", rows=[FeatureRow(features={"x" * 40: 1})]), "feature name must be"),
        (PredictRequest(predictor="p", rows=[FeatureRow(features={"a": float("inf")})]), "infinite"),
        (
            PredictRequest(predictor="p", dense=DenseRows(feature_names=["a"], values=b"\0" * 7, num_rows=2)),
            "7 bytes",
        ),
        (
            PredictRequest(predictor="p", dense=DenseRows(feature_names=["a", "a"], values=b"\0" * 8, num_rows=1)),
            "twice",
        ),
        (
            dense(["a"], [[1], [2]], row_entities=[EntityColumn(entity="store_id", ids=["s1"])]),
            "1 ids for 2 rows",
        ),
        (
            PredictRequest(
                predictor="p",
                rows=[FeatureRow()],
                dense=DenseRows(feature_names=["a"], values=b"\0" * 4, num_rows=1),
            ),
            "not both",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(request_: PredictRequest, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode(request_, LIMITS)


def test_nan_means_not_given() -> None:
    batch = decode(dense(["a"], [[np.nan]]), LIMITS)
    assert np.isnan(batch.values[0, 0])
