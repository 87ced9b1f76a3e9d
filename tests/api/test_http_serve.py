"""The REST port in `sibyl serve`: the start-up line (one process and --workers), a taken port, REST off, and
the codec's edge cases that the end-to-end tests do not reach."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sibyl.api import rest
from sibyl.api.rest import app, codec
from sibyl.api.v2.tensors import to_rows
from sibyl.errors import ConfigError, InvalidArgument
from sibyl.kserve import grpc_predict_v2_pb2 as v2
from sibyl.process.banner import parse_serving_line, serving_line
from sibyl.serving.limits import Limits
from tests.support.inproc import running_server, serve_subprocess_serving
from tests.support.pki import Pki

ONE = b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]}'
INFER = json.dumps({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP32", "data": [1.0]}]}).encode()


def post(port: int, body: bytes = INFER) -> tuple[int, dict[str, str], dict[str, object]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/p/infer", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def wait_ready(port: int, timeout_s: float = 30.0) -> None:
    """The supervisor prints its line before its workers have bound the port: poll readiness (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"REST port {port} not ready in {timeout_s} s"
        time.sleep(0.1)


def test_serving_line_carries_the_http_address_and_old_lines_still_parse() -> None:
    line = serving_line("127.0.0.1", 50051, 9100, http=("127.0.0.1", 8080))
    assert line == "sibyl serving on 127.0.0.1:50051 (metrics :9100) http on 127.0.0.1:8080"
    assert parse_serving_line(line) == ("127.0.0.1", 50051, 9100, 8080, "127.0.0.1")
    workers = serving_line("0.0.0.0", 1, 2, workers=3, http=("0.0.0.0", 4))
    assert parse_serving_line(workers) == ("0.0.0.0", 1, 2, 4, "0.0.0.0")
    assert parse_serving_line("sibyl serving on 127.0.0.1:5 (metrics :6)") == ("127.0.0.1", 5, 6, 0, "")
    assert parse_serving_line("echo serving on 127.0.0.1:7") == ("127.0.0.1", 7, 0, 0, "")


@pytest.mark.parametrize("workers", [1, 2])
def test_sibyl_serve_prints_and_serves_the_http_port(tmp_path: Path, workers: int) -> None:
    proc, serving = serve_subprocess_serving(tmp_path, "--http-port", "0", "--workers", str(workers))
    try:
        assert serving.http_port and serving.http_host == "127.0.0.1"
        wait_ready(serving.http_port)
        pids = set()
        for _ in range(40 if workers > 1 else 1):  # new connection each: SO_REUSEPORT spreads them
            status, headers, answer = post(serving.http_port)
            assert status == 200, answer
            pids.add(headers["sibyl-worker"])
            if len(pids) == workers:
                break
        assert len(pids) == workers, "every worker serves the shared REST port"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def test_a_taken_http_port_fails_start_up_with_one_line(store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve KServe V2 REST on 127.0.0.1:{port}.*--http-port"):
            async with running_server(store, http={"port": port}):
                pass


async def test_rest_off_without_uvicorn_says_so(
    store: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rest, "installed", lambda: False)
    with caplog.at_level(logging.WARNING, logger="sibyl.api.server"):
        async with running_server(store) as server:
            assert server.http_port == 0 and server.port
    assert any("KServe V2 REST is off" in r.getMessage() and "uvicorn" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (b"[1]", None, "must be a JSON object"),
        (b'{"inputs": [{"name": "a", "shape": "3", "datatype": "FP32", "data": [1]}]}', None, "list of integers"),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}', None, 'no "data"'),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1e300]}]}', None, "too large"),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": [1.5]}]}', None, "strings"),
        (ONE + b"xx", "x", "not a number"),
        (ONE + b"xx", str(len(ONE)), "2 binary bytes after"),
        (ONE, str(len(ONE) + 1), "but the body has"),
        (b'{"id": 5, "inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]}', None, "id must be"),
    ],
)
def test_bad_bodies_say_what_to_fix(body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):  # the body read, then its tensors decoded to rows
        to_rows(codec.parse_infer(body, header, "p", ""), limits=Limits())


def test_parameters_and_json_views() -> None:
    doc = {
        "parameters": {"store_id": "s1", "n": 3, "x": 0.5, "binary_data_output": True},
        "inputs": [{"name": "v", "shape": [1, 2], "datatype": "INT64", "data": [[1, 2]]}],
    }
    request = codec.parse_infer(json.dumps(doc).encode(), None, "p", "1")
    binary = request.raw_output
    assert binary and request.version == "1"
    assert request.parameters == doc["parameters"]
    values = request.inputs[0].contents.numbers("v", "INT64", 2, [1, 2])
    assert values.tobytes() == (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
    config = v2.ModelConfig(
        name="p", max_batch_size=8, input=[v2.ModelInput(name="a", data_type=v2.TYPE_FP32, dims=[4])]
    )
    view = codec.triton_json(config)
    assert view["input"][0]["dims"] == [4] and view["input"][0]["data_type"] == "TYPE_FP32"  # numbers, enum names
    assert view["max_batch_size"] == 8 and "version_policy" not in view  # unset messages are left out


async def test_rest_serves_https_with_the_grpc_certificate(store: Path, tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    async with running_server(store, security={**pki.settings(), "tokens": ["t0k"]}) as server:
        trusted = ssl.create_default_context(cafile=str(pki.ca_file))

        def call(context: ssl.SSLContext | None, scheme: str = "https") -> int:
            request = urllib.request.Request(
                f"{scheme}://localhost:{server.http_port}/v2/models/p/infer",
                data=INFER,
                headers={"authorization": "Bearer t0k"},
            )
            with urllib.request.urlopen(request, timeout=10, context=context) as answer:
                return answer.status

        assert await asyncio.to_thread(call, trusted) == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(call, ssl.create_default_context())  # the system's roots do not know our CA
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(call, None, "http")  # plaintext is refused on the TLS port


def test_the_route_table_reads_paths_as_the_spec_does() -> None:
    def first(path: str) -> tuple[str, dict[str, str]] | None:
        routes = app.match(path)
        return (routes[0][0].handler.__name__, routes[0][1]) if routes else None

    assert first("/v2/") == ("server_metadata", {})
    assert first("/v2/models/stats") == ("model_statistics", {})  # every model's, not a model named "stats"
    assert first("/v2/models/stats/infer") == ("infer", {"name": "stats"})
    assert first("/v2/models/m/versions/2/ready") == ("model_ready", {"name": "m", "version": "2"})
    assert first("/v2/models/m/versions/infer") == ("model_metadata", {"name": "m", "version": "infer"})
    assert [r.method for r, _ in app.match("/v2/models/m/infer")] == ["POST"]
    assert first("/v2/models/m/a/b") is None and first("/v1/predict") is None
