"""Outcomes in through a real server: OutcomeService.Report over gRPC and POST /v1/outcomes land in the outcome file
beside the prediction log; bad input is refused whole, naming the item and field; no outcome log refuses."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sibyl.api.server import SibylServer
from sibyl.v1.outcome_pb2 import Outcome, ReportOutcomesRequest
from sibyl.v1.outcome_pb2_grpc import OutcomeServiceStub
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server

NOW_NS = time.time_ns()
PID = "0123456789abcdef0123456789abcdef"


def post(port: int, body: bytes, path: str = "/v1/outcomes") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def lines(path: Path, n: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The outcome file's lines once it holds n (the writer thread appends them within its poll interval)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(text := path.read_text().splitlines()) >= n:
            return [json.loads(line) for line in text]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not get {n} lines")


def count(server: SibylServer, outcome: str) -> float:
    return server.metrics.registry.get_sample_value("sibyl_outcomes_total", {"outcome": outcome}) or 0.0


async def test_grpc_and_rest_outcomes_land_in_the_file_beside_the_log(store: Path) -> None:
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = await PredictionServiceStub(channel).Predict(
                PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})] * 2), timeout=10
            )
            pid = answer.prediction_id
            request = ReportOutcomesRequest(
                outcomes=[
                    Outcome(prediction_id=pid, row=0, value=1.0, observed_at_unix_nanos=NOW_NS, weight=2.5),
                    Outcome(prediction_id=pid, row=1, value=0.0),  # no time: the server stamps it
                ]
            )
            response = await OutcomeServiceStub(channel).Report(request, timeout=10)
        assert response.accepted == 2
        body = {
            "outcomes": [{"prediction_id": pid, "row": 1, "value": 1, "observed_at": "2026-12-06T10:00:00.123456789Z"}]
        }
        status, reply = await asyncio.to_thread(post, server.http_port, json.dumps(body).encode())
        assert (status, reply) == (200, {"accepted": 1})
        got = await lines(store / "outcomes.jsonl", 3)
        assert count(server, "accepted") == 3 and count(server, "written") == 3
    first, stamped, posted = got
    assert first == {"prediction_id": pid, "row": 0, "value": 1.0, "observed_at_unix_nanos": str(NOW_NS), "weight": 2.5}
    assert stamped["value"] == 0.0 and "weight" not in stamped
    assert NOW_NS <= int(stamped["observed_at_unix_nanos"]) <= time.time_ns()
    assert posted["observed_at_unix_nanos"] == "1796551200123456789"  # nanoseconds kept
    assert json_format.Parse(json.dumps(first), Outcome()) == request.outcomes[0]  # proto3 JSON of the Outcome


BAD_ITEMS = [
    ({"prediction_id": "not-ours", "value": 1}, "outcomes[1].prediction_id"),
    ({"prediction_id": PID.upper(), "value": 1}, "outcomes[1].prediction_id"),
    ({"prediction_id": PID, "value": "1"}, "outcomes[1].value: a number is required"),
    ({"prediction_id": PID, "value": True}, "outcomes[1].value: a number is required"),
    ({"prediction_id": PID, "value": 1, "weight": -1}, "outcomes[1].weight"),
    ({"prediction_id": PID, "value": 1, "row": -1}, "outcomes[1].row"),
    ({"prediction_id": PID, "value": 1, "row": 2**32}, "outcomes[1].row"),
    ({"prediction_id": PID, "value": 1, "observed_at": "2026-12-06T10:00:00"}, "outcomes[1].observed_at"),
    ({"prediction_id": PID, "value": 1, "observed_at": "1999-12-31T23:59:59Z"}, "outcomes[1].observed_at"),
    ({"prediction_id": PID, "value": 1, "observed_at": NOW_NS + 10**15}, "outcomes[1].observed_at"),
    ({"prediction_id": PID, "value": 1, "observed_at": "2026-02-30T00:00:00Z"}, "outcomes[1].observed_at"),
    ({"prediction_id": PID, "value": 1, "weigth": 2}, "outcomes[1]: unknown field 'weigth'"),
    ([PID, 1], "outcomes[1]: an outcome is a JSON object"),
]
BAD_BODIES = [
    (b"{", "not JSON"),
    (b'{"outcomes": [{"prediction_id": "%s", "value": 1e309}]}' % PID.encode(), "not JSON"),  # no double
    (b'{"outcomes": {}}', '{"outcomes": [...]}'),
    (b'[{"prediction_id": "x"}]', '{"outcomes": [...]}'),
    (b'{"outcomes": [], "more": 1}', '{"outcomes": [...]}'),
    # Deep: parsed once. orjson >= 3.9 refuses past 1,024 levels itself; older ones parse it and we name the item.
    (b'{"outcomes": [' + b"[" * 5000 + b"]" * 5000 + b"]}", ("outcomes[0]: an outcome is", "depth limit")),
]
GRPC_BAD = [
    (Outcome(prediction_id="x" * 32, value=1), "outcomes[1].prediction_id"),
    (Outcome(prediction_id=PID, value=float("nan")), "outcomes[1].value: nan"),
    (Outcome(prediction_id=PID, value=float("inf")), "outcomes[1].value: inf"),
    (Outcome(prediction_id=PID, value=1, weight=float("nan")), "outcomes[1].weight"),
    (Outcome(prediction_id=PID, value=1, observed_at_unix_nanos=-5), "outcomes[1].observed_at"),
    (Outcome(prediction_id=PID, value=1, observed_at_unix_nanos=1_700_000_000), "outcomes[1].observed_at"),  # seconds
]


async def test_hostile_outcomes_are_refused_whole_naming_item_and_field(store: Path) -> None:
    good: dict[str, Any] = {"prediction_id": PID, "value": 1.0}
    async with running_server(store, predlog={"outcomes_max_per_call": 50}) as server:
        for item, message in BAD_ITEMS:
            body = json.dumps({"outcomes": [good, item]}).encode()
            status, reply = await asyncio.to_thread(post, server.http_port, body)
            assert status == 400 and message in reply["error"], (item, reply)
        for body, messages in BAD_BODIES:
            status, reply = await asyncio.to_thread(post, server.http_port, body)
            either = (messages,) if isinstance(messages, str) else messages
            assert status == 400 and any(m in reply["error"] for m in either), (body[:40], reply)
        many = json.dumps({"outcomes": [good] * 51}).encode()
        status, reply = await asyncio.to_thread(post, server.http_port, many)
        assert status == 400 and "51 in one call, over the limit of 50" in reply["error"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = OutcomeServiceStub(channel)
            for outcome, message in GRPC_BAD:
                request = ReportOutcomesRequest(outcomes=[Outcome(prediction_id=PID, value=0), outcome])
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Report(request, timeout=10)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, outcome
                assert message in (refused.value.details() or ""), (outcome, refused.value.details())
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Report(ReportOutcomesRequest(outcomes=[Outcome(prediction_id=PID)] * 51), timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            raw = channel.unary_unary("/sibyl.v1.OutcomeService/Report")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await raw(b"\xff\xff\xff", timeout=10)  # not a message at all
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a sibyl.v1.ReportOutcomesRequest" in (refused.value.details() or "")
            assert (await stub.Report(ReportOutcomesRequest(), timeout=10)).accepted == 0  # nothing to report: fine
        rejected = count(server, "rejected")
        assert count(server, "accepted") == 0
    assert not (store / "outcomes.jsonl").read_text(), "nothing of a refused call is kept"
    assert rejected == 2 * (len(BAD_ITEMS) + len(GRPC_BAD)) + len(BAD_BODIES) + 2 * 51 + 1


async def test_without_an_outcome_log_reports_are_refused_not_dropped(store: Path) -> None:
    async with running_server(store, predlog={"sink": "none"}) as server:
        body = json.dumps({"outcomes": [{"prediction_id": PID, "value": 1}]}).encode()
        status, reply = await asyncio.to_thread(post, server.http_port, body)
        assert status == 409 and "predlog.sink is none" in reply["error"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await OutcomeServiceStub(channel).Report(
                    ReportOutcomesRequest(outcomes=[Outcome(prediction_id=PID, value=1)]), timeout=10
                )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert count(server, "refused") == 2 and count(server, "accepted") == 0
    assert not (store / "outcomes.jsonl").exists()


async def test_outcomes_need_the_token_as_predict_does(store: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\n")
    async with running_server(store, security={"tokens_file": str(tokens)}) as server:
        body = json.dumps({"outcomes": [{"prediction_id": PID, "value": 1}]}).encode()
        status, _ = await asyncio.to_thread(post, server.http_port, body)
        assert status == 401
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = OutcomeServiceStub(channel)
            request = ReportOutcomesRequest(outcomes=[Outcome(prediction_id=PID, value=1)])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Report(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answer = await stub.Report(request, timeout=10, metadata=(("authorization", "Bearer s3cret"),))
        assert answer.accepted == 1


async def test_reflection_and_health_know_the_outcome_service(store: Path) -> None:
    """grpcurl finds OutcomeService without proto files; a health watcher of it sees SERVING."""
    async with running_server(store) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="sibyl.v1.OutcomeService")
            )
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(file_containing_symbol="sibyl.v1.OutcomeService")
            answers = [r async for r in stub.ServerReflectionInfo(iter([ask]))]
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    (answer,) = answers
    assert answer.file_descriptor_response.file_descriptor_proto, answer
