"""examples/client.py against a real server: the example predictor answers, and its service config really
retries UNAVAILABLE (and nothing else)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from sibyl.config import EXAMPLE_STORE
from sibyl.v1 import predict_pb2, predict_pb2_grpc
from tests.support.inproc import running_server, threaded_grpc_server

CLIENT_PATH = Path(__file__).resolve().parents[2] / "examples" / "client.py"


@pytest.fixture(scope="module")
def client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_client", CLIENT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_predictor_answers(
    client: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_server(tmp_path, f"file://{EXAMPLE_STORE}", features={"backend": "memory"}) as server:
        code = await asyncio.to_thread(client.main, ["--target", f"dns:///127.0.0.1:{server.port}"])
    assert code == 0
    response = json.loads(capsys.readouterr().out)
    assert response["predictor"] == "example"
    assert response["numRows"] == 2
    assert len(response["results"][0]["scores"]) == 2 * response["results"][0].get("dim", 1)


class Flaky(predict_pb2_grpc.PredictionServiceServicer):
    """Fails the first `failures` calls with `code`, then answers."""

    def __init__(self, failures: int, code: grpc.StatusCode) -> None:
        self.failures = failures
        self.code = code
        self.calls = 0

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(self.code, "injected")
        return predict_pb2.PredictResponse(request_id=request.request_id, predictor=request.predictor)


@pytest.fixture
def flaky_server() -> Iterator[tuple[int, list[Flaky]]]:
    holder: list[Flaky] = []

    class Delegate(predict_pb2_grpc.PredictionServiceServicer):
        def Predict(
            self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
        ) -> predict_pb2.PredictResponse:
            return holder[0].Predict(request, context)

    with threaded_grpc_server(
        lambda server: predict_pb2_grpc.add_PredictionServiceServicer_to_server(Delegate(), server)
    ) as port:
        yield port, holder


def test_unavailable_is_retried(client: ModuleType, flaky_server: tuple[int, list[Flaky]]) -> None:
    port, holder = flaky_server
    holder.append(Flaky(2, grpc.StatusCode.UNAVAILABLE))
    with client.make_channel(f"dns:///127.0.0.1:{port}") as channel:
        stub = predict_pb2_grpc.PredictionServiceStub(channel)
        response = client.predict(stub, client.example_request("example"), 5.0)
    assert response.predictor == "example"
    assert holder[0].calls == 3


def test_other_errors_are_not_retried(client: ModuleType, flaky_server: tuple[int, list[Flaky]]) -> None:
    port, holder = flaky_server
    holder.append(Flaky(1, grpc.StatusCode.INVALID_ARGUMENT))
    with client.make_channel(f"dns:///127.0.0.1:{port}") as channel:
        stub = predict_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            client.predict(stub, client.example_request("example"), 5.0)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert holder[0].calls == 1


def test_unreachable_target_fails_fast_with_one_line(client: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.servers import free_port

    assert client.main(["--target", f"dns:///127.0.0.1:{free_port()}", "--deadline-ms", "2000"]) == 1
    assert capsys.readouterr().err.startswith("Predict failed: UNAVAILABLE")
