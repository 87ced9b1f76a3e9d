"""sibyl.client during a drain: health checking keeps its calls off a real server that says NOT_SERVING, and the
retry budget lets refused calls be retried when half the attempts are refused, but not when all are (stand-in
servers that refuse on purpose). sibyl/client/channel.py and docs/deploy.md#calling-sibyl-from-a-backend-service
say why."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import numpy as np

from sibyl.api.server import SibylServer
from sibyl.client import AsyncClient, Client
from sibyl.client.channel import RETRY_BUDGET
from sibyl.v1 import predict_pb2_grpc
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse
from tests.support.inproc import running_server, threaded_grpc_server

ROWS = {"amount": np.ones(1)}  # a column mapping: one row


def refused(server: SibylServer) -> float:
    return server.metrics.registry.get_sample_value("sibyl_rejected_total", {"reason": "draining"}) or 0.0


async def two_servers(stack: AsyncExitStack, store: Path, tmp_path: Path) -> list[SibylServer]:
    url = f"file://{store / 'store'}"
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(await stack.enter_async_context(running_server(tmp_path / name, store_url=url)))
    return servers


async def open_loop(client: AsyncClient, calls: int, rate: float) -> Counter[str]:
    """`calls` calls sent 1/rate s apart, each on its own: the codes they ended with."""

    async def one(i: int) -> str:
        await asyncio.sleep(i / rate)
        try:
            await client.predict("p", ROWS)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"

    return Counter(await asyncio.gather(*(one(i) for i in range(calls))))


async def test_a_server_that_says_not_serving_gets_no_call(store: Path, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        leaving, staying = await two_servers(stack, store, tmp_path)
        await leaving.health.enter_graceful_shutdown()
        leaving.service.draining = True  # it would refuse any call that reached it
        target = f"ipv4:127.0.0.1:{leaving.port},127.0.0.1:{staying.port}"
        async with AsyncClient(target, timeout_s=5) as client:
            codes = await open_loop(client, 200, rate=400.0)
    assert codes == {"OK": 200}
    assert refused(leaving) == 0, "a call reached the server whose health said NOT_SERVING"


class FailingEvery(predict_pb2_grpc.PredictionServiceServicer):
    """Answers UNAVAILABLE to every `period`-th attempt (period 1: all of them), the others OK."""

    def __init__(self, period: int) -> None:
        self.period, self.attempts = period, 0
        self.lock = threading.Lock()

    def Predict(self, request: PredictRequest, context: grpc.ServicerContext) -> PredictResponse:
        with self.lock:
            self.attempts += 1
            n = self.attempts
        if n % self.period == 0:
            context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        return PredictResponse(predictor=request.predictor, num_rows=request.dense.num_rows)


def attempts_for(servicer: FailingEvery, calls: int) -> Counter[str]:
    register = functools.partial(predict_pb2_grpc.add_PredictionServiceServicer_to_server, servicer)
    codes: Counter[str] = Counter()
    with threaded_grpc_server(register) as port, Client(f"127.0.0.1:{port}", timeout_s=5) as client:
        for _ in range(calls):
            try:
                client.predict("p", ROWS)
                codes["OK"] += 1
            except grpc.RpcError as exc:
                codes[exc.code().name] += 1  # type: ignore[attr-defined]
    return codes


def test_the_retry_budget_holds_while_half_the_attempts_are_refused() -> None:
    """A deploy without health checking: one replica of two refuses, every other attempt fails. The old budget
    (10 tokens, 0.1 back per success) stopped retrying after 5 such failures and failed the calls after them."""
    servicer = FailingEvery(period=2)
    assert attempts_for(servicer, 300) == {"OK": 300}
    assert servicer.attempts == 2 * 300 - 1  # every call but the first needed its one retry


def test_the_retry_budget_stops_retries_when_everything_fails() -> None:
    """A failing fleet: after the budget's 50 spare tokens, each call gets one attempt (no retry storm)."""
    servicer = FailingEvery(period=1)
    assert attempts_for(servicer, 300) == {"UNAVAILABLE": 300}
    budget = RETRY_BUDGET["maxTokens"] / 2
    print(f"\n300 calls to a server that fails every attempt: {servicer.attempts} attempts")
    assert servicer.attempts <= 300 + budget + 4  # one attempt per call, the spare tokens, one call's retries
