"""TLS, mutual TLS, certificate rotation and bearer tokens on a real server, with certificates made here."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sibyl.api.auth import TokenSet, token_set
from sibyl.api.tls import certificate_files
from sibyl.cli.main import main as cli_main
from sibyl.config import SecuritySettings
from sibyl.errors import ConfigError
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server
from tests.support.pki import Pair, Pki, cert_pem, issue, key_pem, make_ca

REQUEST = PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": 1.0})])


def replace(path: Path, data: bytes) -> None:
    """Atomic like a real rotation (write aside, rename over)."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


# ---- clients
def tls_channel(port: int, ca: Pair, client: Pair | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        cert_pem(ca), key_pem(client) if client else None, cert_pem(client) if client else None
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)


async def predict_code(channel: grpc.aio.Channel, token: str | None = None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    async with channel:
        try:
            await PredictionServiceStub(channel).Predict(REQUEST, timeout=5, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


# ---- TLS
async def test_tls_serves_and_plaintext_is_refused(store: Path, pki: Pki) -> None:
    async with running_server(store, security=pki.settings()) as server:
        assert await predict_code(tls_channel(server.port, pki.ca)) == grpc.StatusCode.OK
        plaintext = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        assert await predict_code(plaintext) == grpc.StatusCode.UNAVAILABLE
        # A client that trusts another CA does not accept the server.
        assert await predict_code(tls_channel(server.port, pki.other_ca)) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(store: Path, pki: Pki) -> None:
    async with running_server(store, security=pki.settings(mutual=True)) as server:
        assert await predict_code(tls_channel(server.port, pki.ca, pki.client)) == grpc.StatusCode.OK
        assert await predict_code(tls_channel(server.port, pki.ca)) == grpc.StatusCode.UNAVAILABLE
        assert await predict_code(tls_channel(server.port, pki.ca, pki.stranger)) == grpc.StatusCode.UNAVAILABLE


async def test_certificate_rotation_is_picked_up_without_restart(store: Path, pki: Pki) -> None:
    new_ca = make_ca("rotated ca")
    new_server = issue(new_ca, "sibyl", True)
    async with running_server(store, security=pki.settings()) as server:
        assert await predict_code(tls_channel(server.port, pki.ca)) == grpc.StatusCode.OK

        # Half-way through a rotation (new cert, old key) the old certificate keeps serving.
        replace(pki.cert_file, cert_pem(new_server))
        assert await predict_code(tls_channel(server.port, pki.ca)) == grpc.StatusCode.OK

        replace(pki.key_file, key_pem(new_server))
        assert await predict_code(tls_channel(server.port, new_ca)) == grpc.StatusCode.OK
        assert await predict_code(tls_channel(server.port, pki.ca)) == grpc.StatusCode.UNAVAILABLE


def test_half_configured_or_broken_tls_is_a_config_error(pki: Pki, tmp_path: Path) -> None:
    assert certificate_files(SecuritySettings()) is None
    with pytest.raises(ConfigError, match="tls_key"):
        certificate_files(SecuritySettings(tls_cert=str(pki.cert_file)))
    with pytest.raises(ConfigError, match="tls_client_ca"):
        certificate_files(SecuritySettings(tls_client_ca=str(pki.ca_file)))
    with pytest.raises(ConfigError, match="cannot read"):
        certificate_files(SecuritySettings(tls_cert=str(tmp_path / "absent.pem"), tls_key=str(pki.key_file)))
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(key_pem(pki.client))
    with pytest.raises(ConfigError, match="does not fit"):
        certificate_files(SecuritySettings(tls_cert=str(pki.cert_file), tls_key=str(wrong_key)))


# ---- tokens
async def test_bearer_token_required_but_health_and_reflection_open(store: Path) -> None:
    async with running_server(store, security={"tokens": ["s3cret", "other"]}) as server:
        target = f"127.0.0.1:{server.port}"
        assert await predict_code(grpc.aio.insecure_channel(target)) == grpc.StatusCode.UNAUTHENTICATED
        assert await predict_code(grpc.aio.insecure_channel(target), "wrong") == grpc.StatusCode.UNAUTHENTICATED
        assert await predict_code(grpc.aio.insecure_channel(target), "s3cret") == grpc.StatusCode.OK
        assert await predict_code(grpc.aio.insecure_channel(target), "other") == grpc.StatusCode.OK
        async with grpc.aio.insecure_channel(target) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            services = [s.name async for r in stream for s in r.list_services_response.service]
            assert "sibyl.v1.PredictionService" in services
            # Streams are guarded too.
            calls = PredictionServiceStub(channel).PredictStream(iter([REQUEST]), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                _ = [r async for r in calls]
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_tokens_file_is_reread_when_it_changes(store: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# one per line\nfirst\n")
    async with running_server(store, security={"tokens_file": str(tokens)}) as server:
        target = f"127.0.0.1:{server.port}"
        assert await predict_code(grpc.aio.insecure_channel(target), "first") == grpc.StatusCode.OK
        replace(tokens, b"second\n")
        await asyncio.sleep(1.2)  # the file is checked at most once a second
        assert await predict_code(grpc.aio.insecure_channel(target), "second") == grpc.StatusCode.OK
        assert await predict_code(grpc.aio.insecure_channel(target), "first") == grpc.StatusCode.UNAUTHENTICATED
        tokens.unlink()  # a vanished file keeps the last good tokens
        await asyncio.sleep(1.2)
        assert await predict_code(grpc.aio.insecure_channel(target), "second") == grpc.StatusCode.OK


def test_token_set_config_errors(tmp_path: Path) -> None:
    assert token_set(SecuritySettings()) is None
    with pytest.raises(ConfigError, match="cannot read"):
        token_set(SecuritySettings(tokens_file=str(tmp_path / "absent")))
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="no token"):
        token_set(SecuritySettings(tokens_file=str(empty)))
    tokens = TokenSet(["a"], None)
    assert tokens.accepts(b"a") and not tokens.accepts(b"") and not tokens.accepts(b"ab")


# ---- CLI
async def test_cli_predict_with_mutual_tls_and_token(store: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    client_cert, client_key = pki.root / "client.pem", pki.root / "client.key"
    client_cert.write_bytes(cert_pem(pki.client))
    client_key.write_bytes(key_pem(pki.client))
    security = {**pki.settings(mutual=True), "tokens": ["t0k"]}
    async with running_server(store, security=security) as server:
        base = ["predict", "--target", f"127.0.0.1:{server.port}", "--predictor", "p", "--feature", "amount=1"]
        tls = ["--tls-ca", str(pki.ca_file), "--tls-cert", str(client_cert), "--tls-key", str(client_key)]
        assert await asyncio.to_thread(cli_main, [*base, *tls, "--token", "t0k"]) == 0
        assert '"predictionId"' in capsys.readouterr().out
        assert await asyncio.to_thread(cli_main, [*base, *tls]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert await asyncio.to_thread(cli_main, [*base, "--tls-cert", str(client_cert)]) == 2
        assert "--tls-ca" in capsys.readouterr().err
