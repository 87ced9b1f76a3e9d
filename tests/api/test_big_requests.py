"""Big Predict requests decoded in a decode process (server.decode_process_bytes, serving.decode_pool): the same
answers, log records and errors as the inline path, and a decode process that dies fails no call."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest

from sibyl.api.server import SibylServer
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, PredictResponse
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import features_on, running_server

ROWS = 300  # ~10 KB: above the 1 KiB threshold these tests set
SMALL_THRESHOLD = {"decode_process_bytes": 1024}
VOLATILE = (
    "prediction_id",
    "request_id",
    "sent_at_unix_nanos",
    "latency_ms",
    "inference_ms",
    "host",
)  # differ between any two calls


def big_request(request_id: str, bad_row: int | None = None) -> PredictRequest:
    """Rows of both decode paths' kinds: most repeat row 0's layout, some lack a feature (fetched or defaulted)."""
    request = PredictRequest(request_id=request_id, predictor="p", context={"consumer_id": "c1"})
    for i in range(ROWS):
        row = FeatureRow(features={"amount": i / 7, "rating": (i % 5) + 0.5}, entities={"store_id": "s1"})
        if i % 50 == 49:
            del row.features["rating"]
            row.entities["store_id"] = "unknown"
        if i == bad_row:
            row.features["amount"] = float("inf")
        request.rows.append(row)
    return request


async def wait_ready(server: SibylServer) -> None:
    pool = server.service.decode_pool
    for _ in range(1200):  # a spawned process imports numpy and protobuf: seconds on a busy box
        if pool.ready:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the decode processes did not start in 60 s")


def decoded_in(server: SibylServer, where: str) -> float:
    value = server.metrics.registry.get_sample_value("sibyl_big_requests_total", {"decoded_in": where})
    return value or 0.0


def stable(response: PredictResponse) -> bytes:
    response.prediction_id = ""
    response.request_id = ""
    return response.SerializeToString()


def records_by_request(path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        request_id = record["request_id"]
        for key in VOLATILE:
            record.pop(key, None)
        out.setdefault(request_id, []).append(record)
    return {k: sorted(v, key=lambda r: r["role"]) for k, v in out.items()}


async def test_a_big_request_answers_and_logs_the_same_in_a_decode_process(store: Path) -> None:
    async with running_server(store, features=features_on(store), server=SMALL_THRESHOLD) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            starting = await stub.Predict(big_request("starting"), timeout=60)  # in a thread: the pool starts
            assert decoded_in(server, "thread") == 1
            await wait_ready(server)
            in_process = await stub.Predict(big_request("process"), timeout=60)
            assert decoded_in(server, "process") == 1
            server.service.decode_pool.min_bytes = 1 << 30  # the inline path: parse and decode as before
            inline = await stub.Predict(big_request("inline"), timeout=60)
            assert decoded_in(server, "process") == 1 and decoded_in(server, "thread") == 1
    assert in_process.num_rows == ROWS and in_process.request_id == "process"
    assert stable(in_process) == stable(inline) == stable(starting)
    records = records_by_request(store / "predictions.jsonl")
    assert len(records["inline"]) == 2  # primary and shadow
    assert records["process"] == records["inline"] == records["starting"]


async def test_a_big_request_is_refused_with_the_inline_paths_error(store: Path) -> None:
    async with running_server(store, features=features_on(store), server=SMALL_THRESHOLD) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            await stub.Predict(big_request("warm"), timeout=60)
            await wait_ready(server)
            errors = []
            for min_bytes in (1024, 1 << 30):  # in a decode process, then inline
                server.service.decode_pool.min_bytes = min_bytes
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Predict(big_request("bad", bad_row=123), timeout=60)
                errors.append((caught.value.code(), caught.value.details()))
            assert decoded_in(server, "process") == 1
    assert errors[0] == errors[1]
    assert errors[0][0] == grpc.StatusCode.INVALID_ARGUMENT and "row 123 is infinite" in str(errors[0][1])


async def test_a_decode_process_that_dies_fails_no_call(store: Path) -> None:
    async with running_server(store, features=features_on(store), server=SMALL_THRESHOLD) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            await stub.Predict(big_request("warm"), timeout=60)
            await wait_ready(server)
            calls = [asyncio.ensure_future(stub.Predict(big_request(f"c{i}"), timeout=60)) for i in range(8)]
            await asyncio.sleep(0.01)
            workers = multiprocessing.active_children()
            assert workers
            for worker in workers:  # killed while the calls are queued for it or under way
                assert worker.pid is not None
                os.kill(worker.pid, signal.SIGKILL)
            answers = await asyncio.gather(*calls)
            assert [a.num_rows for a in answers] == [ROWS] * 8
            # A new pool starts with the next big request; calls keep being answered meanwhile.
            await stub.Predict(big_request("after"), timeout=60)
            await wait_ready(server)
            before = decoded_in(server, "process")
            assert (await stub.Predict(big_request("again"), timeout=60)).num_rows == ROWS
            assert decoded_in(server, "process") == before + 1


def many_rows(request_id: str, rows: int) -> PredictRequest:
    request = PredictRequest(request_id=request_id, predictor="p", context={"consumer_id": "c1"})
    request.rows.extend(FeatureRow(features={"amount": i / 3, "rating": 1.5}) for i in range(rows))
    return request


async def test_a_big_call_in_a_decode_process_is_admitted_counted_and_drained(store: Path) -> None:
    """max_in_flight counts it while it decodes; a drain waits for it, then closes the pool."""
    settings = {**SMALL_THRESHOLD, "max_in_flight": 1}
    async with running_server(store, features=features_on(store), server=settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = PredictionServiceStub(channel)
            await stub.Predict(big_request("warm"), timeout=60)
            await wait_ready(server)
            big = asyncio.ensure_future(stub.Predict(many_rows("big", 10_000), timeout=60))
            while not server.service.in_flight:
                await asyncio.sleep(0.001)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Predict(PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})]))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await server.stop(30.0)  # the drain: the big call is still in flight
            assert (await big).num_rows == 10_000
    assert decoded_in(server, "process") == 1
    assert not server.service.decode_pool.takes(1 << 20)
