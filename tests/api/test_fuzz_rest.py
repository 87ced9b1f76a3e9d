"""Hostile input on the KServe V2 REST port of a real `sibyl serve` (a subprocess, default limits): hypothesis
drives infer bodies and headers (tests/api/hostile.py: deep nesting, huge and many dimensions, out-of-range
numbers, lone surrogates, wrong types in every field, hostile Content-Type / -Encoding), and the issue-30
reports are regression tests, each of which failed before its fix: bodies, headers (oversized, too many, slow),
pipelining.

Properties: every answer is a 4xx with a JSON {"error"} (or 200), never a 500 nor a giant number; a probe thread
sends a REST health check, a REST infer call and a gRPC health check every 50 ms for the whole module, and every
one of them must succeed (its worst latency is printed; the only time bound is a 10 s hang guard). Refusals
below the body are counted in sibyl_rejected_total{reason}, each by the test that causes it. Default ~300 examples; --runslow: 3,000.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from tests.api.hostile import rest_request
from tests.support.inproc import serve_subprocess_serving

HANG_S = 10.0  # a call that has not answered by then hangs: the only time bound here
KEEP_ALIVE_S = 3.0  # the server's http.keep_alive_s: short, so that idle connections close within the test
ANSWERS = {200, 400, 404, 413, 415, 429}
GIANT_NUMBER = re.compile(r"\d{30}")
ONE = json.dumps({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP32", "data": [1.0]}]}).encode()
INFER = "/v2/models/p/infer"


class Server:
    """The server process, and a probe thread: REST health, REST infer and gRPC health, every 50 ms."""

    def __init__(self, proc: subprocess.Popen[str], grpc_port: int, http_port: int, metrics_port: int) -> None:
        self.proc, self.http_port, self.metrics_port = proc, http_port, metrics_port
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.failures: list[str] = []
        self.worst_s: Counter[str] = Counter()
        self.probes = 0
        self.rss_start = self.rss_peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _probe(self) -> None:
        with grpc.insecure_channel(self.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while not self._stop.wait(0.05):
                for what in ("rest health", "rest infer", "grpc health"):
                    start = time.monotonic()
                    try:
                        if what == "grpc health":
                            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=HANG_S)
                            ok = reply.status == health_pb2.HealthCheckResponse.SERVING
                        elif what == "rest health":
                            ok = self.exchange("GET", "/v2/health/ready", b"", {})[0] == 200
                        else:
                            ok = self.exchange("POST", INFER, ONE, {"Content-Type": "application/json"})[0] == 200
                        if not ok:
                            self.failures.append(f"{what}: refused")
                    except (OSError, grpc.RpcError) as exc:
                        self.failures.append(f"{what}: {type(exc).__name__} {exc}")
                    self.worst_s[what] = max(self.worst_s[what], time.monotonic() - start)
                self.probes += 1
                self.rss_peak = max(self.rss_peak, self.rss())

    def exchange(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of one request on a new connection; a hang past HANG_S (+1 s per MB) raises."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=HANG_S + len(body) / 1e6)
        try:
            conn.request(method, path, body, headers)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def counted(self, reason: str) -> float:
        return self.rejected().get(reason, 0.0)

    def rejected(self) -> dict[str, float]:
        """sibyl_rejected_total by reason, scraped from the metrics port."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=HANG_S) as reply:
            text = reply.read().decode()
        found = re.findall(r'^sibyl_rejected_total\{reason="([^"]+)"\} (\S+)$', text, re.M)
        return {reason: float(value) for reason, value in found}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(HANG_S + 5)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("rest-hostile")
    proc, serving = serve_subprocess_serving(
        root, "--metrics-port", "0", SIBYL_PREDLOG__SINK="none", SIBYL_HTTP__KEEP_ALIVE_S=str(KEEP_ALIVE_S)
    )
    running = Server(proc, serving.port, serving.http_port, serving.metrics_port)
    try:
        yield running
    finally:
        running.stop()


def error_of(status: int, body: bytes) -> str:
    """The {"error"} of a refusal, checked: JSON, a string, no giant number in it."""
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str), (status, body[:300])
    assert not GIANT_NUMBER.search(doc["error"]), doc["error"][:300]
    return str(doc["error"])


def test_fuzzed_bodies_and_headers_get_4xx_with_a_json_error(server: Server, request: pytest.FixtureRequest) -> None:
    seen: Counter[int] = Counter()

    @settings(
        max_examples=3000 if request.config.getoption("--runslow") else 300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        print_blob=True,
    )
    @given(rest_request())
    def check(call: tuple[bytes, dict[str, str]]) -> None:
        body, headers = call
        status, reply = server.exchange("POST", INFER, body, headers)
        seen[status] += 1
        assert status in ANSWERS, (status, reply[:300], body[:300], headers)
        if status != 200:
            error_of(status, reply)

    check()
    print(f"\nREST fuzz answers: {dict(sorted(seen.items()))}")
    assert seen[200] and seen[400] and seen[415]  # the generator reaches valid, refused and mislabelled bodies
    assert server.proc.poll() is None


# ---- the issue-30 reports, one by one: (body, headers, status, words in the error)
def infer_body(**fields: str) -> bytes:
    """A valid one-row body with some fields replaced by raw JSON text."""
    parts = {"inputs": '[{"name": "amount", "shape": [1], "datatype": "FP32", "data": [1.0]}]', **fields}
    if "tensor" in parts:
        parts["inputs"] = "[" + parts.pop("tensor") + "]"
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}").encode()


def tensor(**fields: str) -> str:
    parts = {"name": '"amount"', "shape": "[1]", "datatype": '"FP32"', "data": "[1.0]", **fields}
    return "{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}"


JSON = {"Content-Type": "application/json"}
REPORTED: dict[str, tuple[bytes, dict[str, str], int, str]] = {
    "1,000-deep data": (infer_body(tensor=tensor(data="[" * 1000 + "1" + "]" * 1000)), JSON, 400, "nested"),
    "200,000-deep body (crashed orjson)": (b"[" * 200_000 + b"]" * 200_000, JSON, 400, "nested"),
    "deep parameters, NaN (stdlib parser)": (
        infer_body(parameters='{"a": ' + "[" * 900 + "]" * 900 + "}", nan="NaN"),
        JSON,
        400,
        "nested",
    ),
    "parameter past int64": (infer_body(parameters='{"consumer_id": 9223372036854775808}'), JSON, 400, "int64"),
    "4,000-digit shape, NaN": (infer_body(tensor=tensor(shape="[" + "9" * 4000 + "]"), nan="NaN"), JSON, 400, "shape"),
    "4,000-digit dims product": (
        infer_body(tensor=tensor(shape="[" + ",".join(["9" * 300] * 3) + "]"), nan="NaN"),
        JSON,
        400,
        "shape",
    ),
    "20,000 huge dims": (infer_body(tensor=tensor(shape="[" + ",".join(["10" * 9] * 20_000) + "]")), JSON, 400, "dims"),
    "4,000-digit timeout, NaN": (infer_body(parameters='{"timeout": ' + "9" * 4000 + "}", nan="NaN"), JSON, 200, ""),
    "surrogate id": (infer_body(id='"\\ud800"'), JSON, 400, "UTF-8"),
    "surrogate parameter": (infer_body(parameters='{"consumer_id": "\\ud800"}'), JSON, 400, "UTF-8"),
    "surrogate parameter name": (infer_body(parameters='{"\\udfff": "c1"}'), JSON, 400, "UTF-8"),
    "surrogate input name": (infer_body(tensor=tensor(name='"\\ud800"')), JSON, 400, "UTF-8"),
    "surrogate datatype": (infer_body(tensor=tensor(datatype='"FP\\ud800"')), JSON, 400, "UTF-8"),
    "surrogate BYTES data": (
        infer_body(tensor=tensor() + ", " + tensor(name='"consumer_id"', datatype='"BYTES"', data='["\\ud800"]')),
        JSON,
        400,
        "UTF-8",
    ),
    "surrogate output name": (infer_body(outputs='[{"name": "\\ud800"}]'), JSON, 400, "UTF-8"),
    "outputs[].parameters a number": (infer_body(outputs='[{"name": "score", "parameters": 5}]'), JSON, 400, "object"),
    "outputs a string": (infer_body(outputs='"score"'), JSON, 400, "outputs"),
    "huge Inference-Header-Content-Length": (ONE, {"Inference-Header-Content-Length": "9" * 4000}, 400, "number"),
    "text/plain": (ONE, {"Content-Type": "text/plain"}, 415, "Content-Type"),
    "JSON in latin-1": (ONE, {"Content-Type": "application/json; charset=latin-1"}, 415, "UTF-8"),
    "gzip": (ONE, {"Content-Encoding": "gzip"}, 415, "uncompressed"),
    "no Content-Type (tritonclient.http)": (ONE, {}, 200, ""),
    "curl -d's form type": (ONE, {"Content-Type": "application/x-www-form-urlencoded"}, 200, ""),
    "JSON, charset utf-8": (ONE, {"Content-Type": "application/json; charset=UTF-8"}, 200, ""),
}


@pytest.mark.parametrize("case", list(REPORTED))
def test_reported_bodies_are_refused_with_what_to_fix(server: Server, case: str) -> None:
    body, headers, status, words = REPORTED[case]
    got, reply = server.exchange("POST", INFER, body, headers)
    assert got == status, (got, reply[:300])
    if status != 200:
        assert words in error_of(got, reply), reply[:300]
    assert server.exchange("GET", "/v2/health/live", b"", {})[0] == 200


# ---- below the body: headers and connections
def raw_exchange(server: Server, payload: bytes, chunk: int = 1 << 20) -> tuple[bytes, bool]:
    """(what the server answered, whether it closed the connection before all of payload was sent)."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=HANG_S) as sock:
        cut = False
        try:
            for i in range(0, len(payload), chunk):
                sock.sendall(payload[i : i + chunk])
        except (BrokenPipeError, ConnectionResetError):
            cut = True
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    return answer, cut


def test_a_64_mib_header_is_cut_off_at_the_limit(server: Server) -> None:
    rss, before = server.rss(), server.counted("http_header_size")
    payload = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 << 20) + b"\r\n\r\n"
    answer, cut = raw_exchange(server, payload)
    print(f"\n64 MiB header: cut {cut}, answer {answer[:60]!r}, RSS +{(server.rss() - rss) / 2**20:.0f} MiB")
    assert cut or answer.startswith(b"HTTP/1.1 431"), answer[:200]  # before: read whole, RSS +370 MiB
    assert server.counted("http_header_size") == before + 1


def test_too_many_headers_are_431(server: Server) -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(500))
    before = server.counted("http_header_count")
    answer, _ = raw_exchange(server, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert server.counted("http_header_count") == before + 1
    assert b"header fields" in answer


def test_slowloris_connections_are_closed(server: Server) -> None:
    """Connections that start a request and never finish its headers, or its body, get 408 and are closed
    (before: open for ever, one file descriptor each)."""
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: "
    body = b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(ONE) + ONE[:10]
    before = server.rejected()
    socks = [socket.create_connection(("127.0.0.1", server.http_port), timeout=HANG_S * 3) for _ in range(100)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(head if i % 2 else body)
        answers = []
        for sock in socks:
            answer = b""
            while data := sock.recv(65536):  # b"": the server closed it
                answer += data
            answers.append(answer)
    finally:
        for sock in socks:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
    assert sum(b"request body" in a for a in answers) == 50
    after = server.rejected()
    for reason in ("http_header_timeout", "http_body_timeout"):
        assert after.get(reason, 0) == before.get(reason, 0) + 50, (reason, after)


def test_connections_that_never_send_a_byte_are_closed(server: Server) -> None:
    """Closed after http.keep_alive_s, as an idle keep-alive connection (before: open for ever)."""
    socks = [socket.create_connection(("127.0.0.1", server.http_port), timeout=HANG_S * 3) for _ in range(20)]
    try:
        assert all(sock.recv(65536) == b"" for sock in socks)  # b"": closed by the server, without an answer
    finally:
        for sock in socks:
            sock.close()


def test_pipelined_requests_are_answered_in_order_and_a_flood_is_cut(server: Server) -> None:
    one = b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(ONE) + ONE
    answer, _ = raw_exchange(server, one * 20 + b"GET /v2/health/live HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200") == 21, answer[:300]
    flood = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 5_000 + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
    answer, cut = raw_exchange(server, flood)
    answered = answer.count(b"HTTP/1.1 200")
    print(f"\n5,000 pipelined: {answered} answered, cut {cut}")
    assert answered <= 64 + 1, answered  # ConnectionLimits.max_pipelined ahead of the one being answered


def test_media_types_are_counted(server: Server) -> None:
    before = server.rejected()
    assert server.exchange("POST", INFER, ONE, {"Content-Type": "text/plain"})[0] == 415
    assert server.exchange("POST", INFER, ONE, {"Content-Encoding": "gzip"})[0] == 415
    after = server.rejected()
    for reason in ("http_media_type", "http_content_encoding"):
        assert after.get(reason, 0) == before.get(reason, 0) + 1, (reason, after)


def test_the_probe_always_answered(server: Server) -> None:
    """Last in the module: every probe call during the tests above succeeded."""
    rounds = server.probes
    for _ in range(int(HANG_S / 0.05)):  # one more whole round, however few tests ran before
        if server.probes > rounds:
            break
        time.sleep(0.05)
    worst = ", ".join(f"{what} {s * 1000:.0f} ms" for what, s in sorted(server.worst_s.items()))
    print(
        f"\nprobe: {server.probes} rounds, worst {worst}; RSS {server.rss_start / 2**20:.0f} -> peak "
        f"{server.rss_peak / 2**20:.0f} MiB; rejected {server.rejected()}"
    )
    assert server.probes > 0 and not server.failures, server.failures[:5]
    assert server.proc.poll() is None
