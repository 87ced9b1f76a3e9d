"""PredictStream through a real server: many messages on one stream, answers matched by request id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np

from sibyl.v1.predict_pb2 import DenseRows, PredictRequest, PredictStreamResponse
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import PRIMARY_WEIGHTS, running_server
from tests.support.onnxgen import expected_scores

MESSAGES, ROWS = 100, 100  # 10,000 rows
NAMES = ["amount", "age", "rating", "emb[0]", "emb[1]"]


def batch(i: int) -> tuple[PredictRequest, np.ndarray]:
    values = np.random.default_rng(i).normal(size=(ROWS, len(NAMES))).astype("<f4")
    dense = DenseRows(feature_names=NAMES, values=values.tobytes(), num_rows=ROWS)
    return PredictRequest(request_id=f"req-{i}", predictor="p", dense=dense), values


async def collect(stub: PredictionServiceStub, requests: list[PredictRequest]) -> list[PredictStreamResponse]:
    async def send() -> AsyncIterator[PredictRequest]:
        for request in requests:
            yield request

    return [r async for r in stub.PredictStream(send(), timeout=30)]


async def test_ten_thousand_rows_in_a_hundred_messages(store: Path) -> None:
    sent = [batch(i) for i in range(MESSAGES)]
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            responses = await collect(PredictionServiceStub(channel), [r for r, _ in sent])
    assert len(responses) == MESSAGES
    by_id = {r.request_id: r for r in responses}
    assert sorted(by_id) == sorted(r.request_id for r, _ in sent), "every request answered exactly once"
    for request, values in sent:
        answer = by_id[request.request_id]
        assert answer.WhichOneof("outcome") == "response"
        assert answer.response.request_id == request.request_id and answer.response.num_rows == ROWS
        np.testing.assert_allclose(
            answer.response.results[0].scores, expected_scores(PRIMARY_WEIGHTS, -0.5, values), rtol=1e-5, atol=1e-7
        )


async def test_a_bad_message_fails_alone_and_the_stream_goes_on(store: Path) -> None:
    requests = [batch(i)[0] for i in range(20)]
    requests[5] = PredictRequest(request_id="typo", predictor="p", dense=DenseRows(feature_names=["amunt"], num_rows=1))
    requests[5].dense.values = np.zeros(1, "<f4").tobytes()
    requests[12] = PredictRequest(request_id="ghost", predictor="nope", dense=requests[12].dense)
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            responses = await collect(stub, requests)
            after = await collect(stub, [batch(99)[0]])  # the server still serves streams afterwards
    by_id = {r.request_id: r for r in responses}
    assert len(responses) == len(requests) == len(by_id)
    assert by_id["typo"].error.code_name == "INVALID_ARGUMENT" and "amunt" in by_id["typo"].error.message
    assert (
        by_id["ghost"].error.code_name == "NOT_FOUND"
        and by_id["ghost"].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    )
    ok = [r for r in responses if r.WhichOneof("outcome") == "response"]
    assert len(ok) == len(requests) - 2
    assert all(r.response.num_rows == ROWS for r in ok)
    assert [r.WhichOneof("outcome") for r in after] == ["response"]


async def test_malformed_bytes_on_a_stream_answer_that_message_only(store: Path) -> None:
    good = batch(1)[0]
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.stream_stream(
                "/sibyl.v1.PredictionService/PredictStream",
                request_serializer=lambda b: b,
                response_deserializer=PredictStreamResponse.FromString,
            )

            async def send() -> AsyncIterator[bytes]:
                yield good.SerializeToString()
                yield b"\xff\xff\xff"  # not a PredictRequest
                yield good.SerializeToString()

            responses = [r async for r in call(send(), timeout=10)]
    outcomes = sorted(r.WhichOneof("outcome") for r in responses)
    assert outcomes == ["error", "response", "response"]
    (error,) = [r.error for r in responses if r.HasField("error")]
    assert error.code_name == "INVALID_ARGUMENT"
