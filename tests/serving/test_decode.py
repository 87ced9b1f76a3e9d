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


# ---- the work budget: every declared count checked before anything proportional to it is allocated
SMALL = Limits(max_rows=100, max_models=3, max_name_length=32, max_columns=8, max_elements=200)


def rows_request(*rows: FeatureRow, **kw: object) -> PredictRequest:
    return PredictRequest(predictor="p", rows=list(rows), **kw)


def test_vectors_decode_through_numpy_with_widths_that_differ_between_rows() -> None:
    request = rows_request(
        FeatureRow(vectors={"emb": FloatVector(values=[1, 2])}, features={"emb[0]": 9}),
        FeatureRow(vectors={"emb": FloatVector(values=[3, 4, 5])}),
        FeatureRow(features={"a": 7}),
    )
    batch = decode(request, SMALL)
    assert batch.names == ["emb[0]", "emb[1]", "emb[2]", "a"]
    assert batch.values[0, :2].tolist() == [1, 2] and np.isnan(batch.values[0, 2])  # the vector wins over emb[0]
    assert batch.values[1, :3].tolist() == [3, 4, 5]
    assert np.isnan(batch.values[2, :3]).all() and batch.values[2, 3] == 7


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        # A vector wider than max_columns: refused before one name per column is made.
        (rows_request(FeatureRow(vectors={"v": FloatVector(values=[0.0] * 9)})), "9 columns in vector 'v'"),
        # Sparse rows: each row a name of its own.
        (rows_request(*[FeatureRow(features={f"f{i}": 1}) for i in range(9)]), "9 feature columns"),
        # rows x columns over max_elements although every row is small.
        (
            rows_request(*[FeatureRow(features={f"f{i % 8}": 1}) for i in range(30)]),
            r"30 rows x 8 columns = 240 values.*server.max_elements",
        ),
        # Entity ids count as columns of the budget too.
        (
            rows_request(*[FeatureRow(features={f"f{j}": 1 for j in range(8)}, entities={"e": "1"})] * 25),
            r"25 rows x 9 columns = 225 values and entity ids",
        ),
        # A new entity per row: rows x entities ids.
        (rows_request(*[FeatureRow(entities={f"e{i}": "x"}) for i in range(9)]), "9 row entities"),
        (rows_request(FeatureRow(entities={"e": "x" * 33})), "row 0 e id is 33 characters"),
        (PredictRequest(predictor="p", rows=[FeatureRow()], request_id="r" * 33), "request_id is 33 characters"),
        (
            PredictRequest(predictor="p", rows=[FeatureRow()], context={f"e{i}": "1" for i in range(9)}),
            "9 context entities",
        ),
        # Dense: counts before bytes, overflow-safe (uint32 rows x many names).
        (
            PredictRequest(predictor="p", dense=DenseRows(feature_names=["a"] * 9, num_rows=1)),
            "9 feature columns",
        ),
        (
            PredictRequest(predictor="p", dense=DenseRows(feature_names=["a", "b"], num_rows=2**32 - 1)),
            "4294967295 rows",
        ),
        (
            PredictRequest(predictor="p", dense=DenseRows(feature_names=["a", "b", "c"], num_rows=70)),
            "70 rows x 3 columns = 210",
        ),
        (PredictRequest(predictor="p", dense=DenseRows(num_rows=50)), "no feature_names and no row_entities"),
        (
            dense(["a"], [[1], [2]], row_entities=[EntityColumn(entity="s", ids=["1", "2"])] * 2),
            "lists 's' twice",
        ),
        (dense(["a"], [[1]], row_entities=[EntityColumn(entity="s", ids=["x" * 33])]), "longer than 32"),
    ],
)
def test_budget_refusals_name_the_limit_and_the_value(request_: PredictRequest, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode(request_, SMALL)


def test_given_values_are_counted_before_any_per_value_work() -> None:
    limits = Limits(max_elements=1_000)
    vector = FloatVector(values=np.zeros(1_001, np.float32))
    with pytest.raises(InvalidArgument, match="1001 feature values"):
        decode(rows_request(FeatureRow(vectors={"v": vector})), limits)


def test_duplicate_names_are_found_in_one_pass_wherever_they_are() -> None:
    names = [f"c{i}" for i in range(50_000)] + ["c49999"]
    request = PredictRequest(
        predictor="p", dense=DenseRows(feature_names=names, values=b"\0" * 4 * len(names), num_rows=1)
    )
    with pytest.raises(InvalidArgument, match="'c49999' twice"):
        decode(request, Limits(max_columns=100_000, max_elements=100_000))


def test_dense_rows_with_only_entity_columns_are_fine() -> None:
    request = PredictRequest(
        predictor="p", dense=DenseRows(num_rows=2), row_entities=[EntityColumn(entity="s", ids=["1", "2"])]
    )
    batch = decode(request, SMALL)
    assert batch.values.shape == (2, 0) and batch.row_entities == {"s": ["1", "2"]}


def random_rows(rng: np.random.Generator) -> PredictRequest:
    """Map rows as clients send them: mostly alike (the fast path), sometimes not (the general one)."""
    pool, vector_pool, entity_pool = ["a", "b", "c", "emb[1]", "d"], ["emb", "w"], ["store_id", "zone"]
    names = [str(n) for n in rng.choice(pool, rng.integers(0, 4), replace=False)]
    vectors = {str(v): int(rng.integers(0, 3)) for v in rng.choice(vector_pool, rng.integers(0, 3), replace=False)}
    entities = [str(e) for e in rng.choice(entity_pool, rng.integers(0, 3), replace=False)]
    rows = []
    for _ in range(int(rng.integers(1, 5))):
        differs = rng.integers(0, 8)  # 0-2: this row's features, vectors or entities differ from row 0's
        row_names, row_vectors, row_entities = names, vectors, entities
        if differs == 0:
            row_names = [str(n) for n in rng.choice(pool, rng.integers(0, 4), replace=False)]
        elif differs == 1:
            other = rng.choice(vector_pool, rng.integers(0, 3), replace=False)
            row_vectors = {str(v): int(rng.integers(0, 3)) for v in other}
        elif differs == 2:
            row_entities = [str(e) for e in rng.choice(entity_pool, rng.integers(0, 3), replace=False)]
        rows.append(
            FeatureRow(
                features={n: float(rng.integers(-9, 9)) for n in row_names},
                vectors={v: FloatVector(values=rng.random(w).astype(np.float32)) for v, w in row_vectors.items()},
                entities={e: str(rng.integers(0, 3)) for e in row_entities},
            )
        )
    return PredictRequest(predictor="p", rows=rows, context={"consumer_id": "c"})


def test_alike_rows_decode_exactly_as_the_general_path() -> None:
    """The fast path for rows that repeat row 0's layout gives what the general path gives, and declines
    (None) whenever it could not: checked over random requests, both paths taken many times."""
    from sibyl.serving.decode import _alike_rows, _any_rows

    rng = np.random.default_rng(7)
    taken = declined = 0
    for _ in range(600):
        request = random_rows(rng)
        before = request.SerializeToString()
        n = len(request.rows)
        general = _any_rows(request, n, LIMITS)
        fast = _alike_rows(request, n, LIMITS)
        assert request.SerializeToString() == before  # neither path writes into the request's maps
        if fast is None:
            declined += 1
            continue
        taken += 1
        assert fast.names == general.names and fast.num_rows == general.num_rows
        np.testing.assert_array_equal(fast.values, general.values)  # NaN == NaN here
        assert fast.row_entities == general.row_entities and fast.shared_entities == general.shared_entities
    assert taken > 150 and declined > 100  # both paths well covered (the split varies a little with protobuf)
