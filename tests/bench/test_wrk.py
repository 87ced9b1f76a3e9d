"""The HTTP field's load client: wrk with our Lua script against a tiny local HTTP server (1 s runs), and the
parser of what the script prints. Needs Debian's wrk: missing, the real runs skip (fail when CI=true)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from benchmarks.load import wrk
from tests.support.needs import in_ci
from tests.support.process import LOOPBACK, free_port

ANSWER = b'{"scores": [0.25]}'


class Handler(http.server.BaseHTTPRequestHandler):
    """200 with a small JSON body on /ok (after checking the POST body arrived whole), 500 on anything else."""

    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = self.path == "/ok" and body == b'{"rows": [[1.0, 2.0]]}' and self.headers["Content-Type"] == "x/y"
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def exe() -> str:
    found = wrk.binary()
    if found is None:
        message = "wrk not found: apt-get install wrk (scripts/test.sh does)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture
def port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def report_line(**changes: object) -> str:
    doc: dict[str, object] = {
        "requests": 1000, "duration_us": 2_000_000, "bytes": 1, "connect": 0, "read": 1, "write": 0, "timeout": 2,
        "status_over_399": 3, "non2xx": 4, "min_us": 100, "max_us": 9000, "mean_us": 512.5,
        "p50_us": 500, "p90_us": 800, "p99_us": 2000, "p999_us": 5000,
        "cdf": [[100, 0.0], [500, 50.0], [2000, 99.0], [9000, 100.0]],
    }  # fmt: skip
    doc.update(changes)
    return "Running 2s test @ http://x\n" + wrk.MARK + json.dumps(doc) + "\n"


def test_the_report_line_becomes_a_run_in_milliseconds() -> None:
    r = wrk.parse_report(report_line(), concurrency=8)
    assert (r.concurrency, r.requests, r.duration_s, r.requests_per_s) == (8, 1000, 2.0, 500.0)
    assert (r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms, r.max_ms, r.mean_ms) == (0.5, 0.8, 2.0, 5.0, 9.0, 0.5125)
    assert r.cdf == [(0.1, 0.0), (0.5, 50.0), (2.0, 99.0), (9.0, 100.0)]
    # wrk's own status count (>= 400) is inside non2xx: counted once
    assert r.errors == {"connect": 0, "read": 1, "write": 0, "timeout": 2, "non2xx": 4} and r.error_count == 7
    r.server_cpu_s, r.client_cpu_s = 0.5, 0.1
    assert (r.server_cpu_us_per_call, r.client_cpu_us_per_call) == (500.0, 100.0)


def test_no_report_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="WRK_JSON"):
        wrk.parse_report("Running 1s test\n  1 requests\n", concurrency=1)


def test_one_thread_whole_seconds_and_our_script() -> None:
    cmd = wrk.command("wrk", "http://127.0.0.1:1/p", 8, 0.3, 2.5)
    assert cmd == ["wrk", "-t1", "-c8", "-d1s", "--timeout=3s", "-s", str(wrk.SCRIPT), "http://127.0.0.1:1/p"]


def test_a_real_run_counts_requests_percentiles_and_a_cdf(exe: str, port: int) -> None:
    body = b'{"rows": [[1.0, 2.0]]}'
    r = wrk.run(exe, f"http://{LOOPBACK}:{port}/ok", body, content_type="x/y", concurrency=2, duration_s=1)
    assert r.error is None, r.error
    assert r.requests > 0 and r.error_count == 0
    assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms <= r.p999_ms <= r.max_ms
    assert len(r.cdf) == wrk.CDF_POINTS
    values, levels = [v for v, _ in r.cdf], [p for _, p in r.cdf]
    assert levels[0] == 0.0 and levels[-1] == 100.0 and levels == sorted(levels)
    assert values == sorted(values) and values[-1] == r.max_ms  # the last point is the maximum, not wrk's 0
    assert sum(p >= 99.0 for p in levels) >= wrk.CDF_POINTS // 3  # the tail has room
    assert r.client_cpu_us_per_call is not None and r.server_cpu_s is None  # no server pid given


def test_answers_outside_2xx_are_errors(exe: str, port: int) -> None:
    r = wrk.run(exe, f"http://{LOOPBACK}:{port}/wrong", b"{}", concurrency=1, duration_s=1)
    assert r.error is None, r.error
    assert r.requests > 0 and r.errors["non2xx"] == r.requests


def test_a_refused_connection_is_counted_not_hidden(exe: str) -> None:
    r = wrk.run(exe, f"http://{LOOPBACK}:{free_port()}/ok", b"{}", concurrency=1, duration_s=1)
    assert r.error is not None or r.errors["connect"] > 0
