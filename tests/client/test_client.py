"""sibyl.client against a real server (scores, tables in and out, token, TLS) and against stand-in servicers on
real gRPC servers for what a healthy server never does (fail, stall): retries, deadlines, round-robin."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from sibyl.client import AsyncClient, Client, Tls, build_request
from sibyl.errors import InvalidArgument
from sibyl.v1 import predict_pb2, predict_pb2_grpc
from tests.support.inproc import features_on, running_server, threaded_grpc_server
from tests.support.pki import Pki
from tests.support.reference_rows import AMOUNTS, CONSUMER_IDS, predict_scores


def frame() -> pd.DataFrame:
    """The rows of tests/api/test_v2.predict_scores: amount given, the rest from the store by consumer_id."""
    return pd.DataFrame({"amount": AMOUNTS, "consumer_id": CONSUMER_IDS})


async def test_tables_arrays_and_records_get_the_scores_of_predict(store: Path) -> None:
    async with running_server(store, features=features_on(store)) as server:
        target = f"127.0.0.1:{server.port}"
        expected = await predict_scores(server.port)
        context = {"store_id": "s1"}

        def blocking() -> dict[str, object]:
            with Client(target, timeout_s=5) as client:
                return {
                    "frame": client.predict("p", frame(), context=context, extra_models=["s@1"]),
                    "array": client.predict(
                        "p",
                        np.array(AMOUNTS).reshape(-1, 1),
                        feature_names=["amount"],
                        entities={"consumer_id": CONSUMER_IDS},
                        context=context,
                    ),
                    "records": client.predict(
                        "p",
                        [{"amount": a, "consumer_id": c} for a, c in zip(AMOUNTS, CONSUMER_IDS, strict=True)],
                        context=context,
                    ),
                    # NaN = not given: age comes from the store, exactly as if the column were absent.
                    "nan": client.predict("p", frame().assign(age=np.nan), context=context),
                }

        out = await asyncio.to_thread(blocking)
        async with AsyncClient(target, timeout_s=5) as client:
            out["async"] = await client.predict("p", frame(), context=context)
    for key in ("frame", "array", "records", "nan", "async"):
        prediction = out[key]
        np.testing.assert_allclose(prediction.scores[:, 0], expected, rtol=1e-6)  # type: ignore[attr-defined]
        assert prediction.model == "m@1" and prediction.scores.dtype == np.float32  # type: ignore[attr-defined]
    both = out["frame"]
    assert [(r.model, r.role) for r in both.results] == [("m@1", "primary"), ("s@1", "extra")]  # type: ignore[attr-defined]
    table = both.to_pandas(all_models=True)  # type: ignore[attr-defined]
    assert list(table.columns) == ["score", "s@1"] and len(table) == 3
    assert list(both.defaulted["age"]) == [2]  # type: ignore[attr-defined]  # "nobody" is not in the store


def test_dense_form_from_a_frame_with_ids_and_missing_values() -> None:
    table = pd.DataFrame(
        {
            "amount": [1.0, None],
            "count": pd.array([3, None], dtype="Int64"),  # pandas' nullable ints: NA is "not given"
            "store_id": ["s1", "s2"],
            "zone": pd.Categorical(["a", "b"]),
            "code": [7, 8],  # numeric, but named an entity column
        }
    )
    request = build_request("p", table, entity_columns=["code"], context={"consumer_id": 7})
    assert list(request.dense.feature_names) == ["amount", "count"] and request.dense.num_rows == 2
    values = np.frombuffer(request.dense.values, "<f4").reshape(2, 2)
    assert values[0].tolist() == [1.0, 3.0] and np.isnan(values[1]).all()
    assert {e.entity: list(e.ids) for e in request.row_entities} == {
        "store_id": ["s1", "s2"],
        "zone": ["a", "b"],
        "code": ["7", "8"],
    }
    assert dict(request.context) == {"consumer_id": "7"} and not request.rows


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        (np.ones((2, 3)), {}, "needs feature_names"),
        (np.ones((2, 3)), {"feature_names": ["a", "b"]}, "shape (2, 3) for 2 feature_names"),
        ({"a": [1, 2], "b": [1]}, {}, "'b' has 1 values, earlier columns 2"),
        ({"a": [1, 2]}, {"entity_columns": ["x"]}, "entity_columns ['x']"),
        ([{"a": 1}, 5], {}, "rows[1] is a int"),
        ("text", {}, "rows of type str"),
    ],
)
def test_bad_rows_say_what_to_fix(rows: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_request("p", rows, **kwargs)  # type: ignore[arg-type]


class StandIn(predict_pb2_grpc.PredictionServiceServicer):
    """Fails the first len(codes) calls with those codes (then answers), or stalls each call for delay_s."""

    def __init__(self, codes: tuple[grpc.StatusCode, ...] = (), delay_s: float = 0.0) -> None:
        self.codes, self.delay_s = codes, delay_s
        self.calls = 0
        self.lock = threading.Lock()

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        with self.lock:
            self.calls += 1
            n = self.calls
        if n <= len(self.codes):
            context.abort(self.codes[n - 1], "injected")
        if self.delay_s:
            time.sleep(self.delay_s)
        return predict_pb2.PredictResponse(predictor=request.predictor, num_rows=request.dense.num_rows)


def serve(servicer: StandIn):  # type: ignore[no-untyped-def]
    return threaded_grpc_server(lambda s: predict_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, s))


ROWS = np.zeros((1, 1))


@pytest.mark.parametrize(
    ("codes", "retries", "answered", "calls"),
    [
        ((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED), 3, True, 3),
        ((grpc.StatusCode.UNAVAILABLE,), 0, False, 1),  # retries off
        ((grpc.StatusCode.INVALID_ARGUMENT,), 3, False, 1),  # the caller's to fix: never retried
        ((grpc.StatusCode.UNAVAILABLE,) * 5, 2, False, 3),  # retries spent
    ],
)
def test_retries_unavailable_and_resource_exhausted_only(
    codes: tuple[grpc.StatusCode, ...], retries: int, answered: bool, calls: int
) -> None:
    servicer = StandIn(codes)
    with serve(servicer) as port, Client(f"127.0.0.1:{port}", retries=retries, timeout_s=5) as client:
        if answered:
            assert client.predict("p", ROWS, feature_names=["x"]).response.num_rows == 1
        else:
            with pytest.raises(grpc.RpcError) as info:
                client.predict("p", ROWS, feature_names=["x"])
            assert info.value.code() == codes[0]  # type: ignore[attr-defined]
    assert servicer.calls == calls


def test_deadline_per_call_and_default() -> None:
    servicer = StandIn(delay_s=0.5)
    with serve(servicer) as port, Client(f"127.0.0.1:{port}", timeout_s=0.05) as client:
        for timeout in (None, 0.05):  # the client's default, then a per-call one
            with pytest.raises(grpc.RpcError) as info:
                client.predict("p", ROWS, feature_names=["x"], timeout_s=timeout)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        assert client.predict("p", ROWS, feature_names=["x"], timeout_s=5).response.num_rows == 1


def test_round_robin_spreads_calls_over_every_address() -> None:
    first, second = StandIn(), StandIn()
    with serve(first) as a, serve(second) as b:
        with Client(f"ipv4:127.0.0.1:{a},127.0.0.1:{b}", timeout_s=5) as client:
            for _ in range(20):
                client.predict("p", ROWS, feature_names=["x"])
    assert first.calls + second.calls == 20 and first.calls >= 5 and second.calls >= 5


async def test_token_and_tls_against_a_real_server(store: Path, tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    security = {**pki.settings(), "tokens": ["s3cret"]}
    async with running_server(store, security=security) as server:
        target = f"localhost:{server.port}"
        tls = Tls(ca_file=pki.ca_file)
        async with AsyncClient(target, tls=tls, token="s3cret", timeout_s=5) as client:
            answered = await client.predict("p", {"amount": [1.0]})
        async with AsyncClient(target, tls=tls, timeout_s=5) as client:
            with pytest.raises(grpc.aio.AioRpcError) as no_token:
                await client.predict("p", {"amount": [1.0]})
        async with AsyncClient(target, token="s3cret", timeout_s=2, retries=0) as client:
            with pytest.raises(grpc.aio.AioRpcError) as plaintext:
                await client.predict("p", {"amount": [1.0]})
    assert answered.scores.shape == (1, 1)
    assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bad_client_settings_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="timeout_s must be positive"):
        Client("127.0.0.1:1", timeout_s=0)
    with pytest.raises(InvalidArgument, match="10 s ping floor"):
        Client("127.0.0.1:1", keepalive_s=1)
    with pytest.raises(InvalidArgument, match="cert_file and key_file together"):
        Client("127.0.0.1:1", tls=Tls(cert_file="c.pem"))
    with pytest.raises(InvalidArgument, match="cannot read"):
        Client("127.0.0.1:1", tls=Tls(ca_file="/nonexistent/ca.pem"))
