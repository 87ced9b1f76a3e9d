"""`python -m sibyl.process.healthcheck` against a real gRPC health service: 0 when SERVING, 1 otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sibyl.process import healthcheck
from tests.support.inproc import threaded_grpc_server
from tests.support.servers import free_port


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    servicer = health.HealthServicer()
    with threaded_grpc_server(lambda server: health_pb2_grpc.add_HealthServicer_to_server(servicer, server)) as port:
        yield port, servicer


def test_serving_exits_zero(health_server: tuple[int, health.HealthServicer], capsys: pytest.CaptureFixture) -> None:
    port, _ = health_server
    assert healthcheck.main(["--port", str(port)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_not_serving_exits_one(health_server: tuple[int, health.HealthServicer]) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    ok, message = healthcheck.check(port)
    assert not ok
    assert "NOT_SERVING" in message
    assert healthcheck.main(["--port", str(port)]) == 1


def test_unknown_service_is_unhealthy(health_server: tuple[int, health.HealthServicer]) -> None:
    port, _ = health_server
    ok, message = healthcheck.check(port, "no.such.Service")
    assert not ok
    assert "NOT_FOUND" in message


def test_nothing_listening_is_unhealthy_within_timeout(capsys: pytest.CaptureFixture) -> None:
    assert healthcheck.main(["--port", str(free_port()), "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("unhealthy: ") and out.count("\n") == 1


def test_port_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIBYL_SERVER__PORT", "6123")
    assert healthcheck._default_port() == 6123
    monkeypatch.setenv("SIBYL_SERVER__PORT", "not-a-port")
    assert healthcheck._default_port() == healthcheck.DEFAULT_PORT
