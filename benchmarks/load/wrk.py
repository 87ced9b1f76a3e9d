"""wrk (Debian's, C, one epoll thread) as the one HTTP load client for every HTTP server of the field: closed loop
at a concurrency (= open connections, each sending its next request when the last is answered), one POST body per
server, its latency percentiles and CDF printed by our Lua script (wrk_post.lua) and read back here.

One run = a warm-up wrk process (not measured), then the measured one; the server tree's CPU (/proc, load.cpu) is
read around the measured process and divided by the requests it completed; the client's CPU is wrk's own
(RUSAGE_CHILDREN). wrk takes whole seconds: durations are rounded up. Errors = connect, read, write and timeout
errors plus answers outside 2xx (wrk's own status count starts at 400).

`apt-get install wrk` puts it on PATH; $SIBYL_WRK points at another binary.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.load.cpu import tree_cpu_s

SCRIPT = Path(__file__).with_name("wrk_post.lua")
MARK = "WRK_JSON "
CDF_POINTS = 200
ERROR_KINDS = ("connect", "read", "write", "timeout", "non2xx")


def binary() -> str | None:
    """$SIBYL_WRK, else wrk on PATH; None when there is none."""
    return os.environ.get("SIBYL_WRK") or shutil.which("wrk")


def install(timeout_s: float = 600.0) -> str:
    """`apt-get install -y wrk` (Debian's package; --with-peers calls it), after `apt-get update` when the package
    lists do not know it yet (a fresh machine); wrk's path. RuntimeError on failure."""
    get = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    done = subprocess.run(get, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=timeout_s)
        done = subprocess.run(get, capture_output=True, text=True, timeout=timeout_s)
    found = binary()
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"apt-get install wrk failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return found


@dataclass
class WrkRun:
    """One measured wrk process: what it saw (latencies in ms) and what the server and wrk spent meanwhile."""

    concurrency: int
    requests: int  # completed responses, 2xx or not
    duration_s: float  # wrk's own measured time
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    cdf: list[tuple[float, float]]  # (latency ms, percentile) points of the latency CDF
    errors: dict[str, int] = field(default_factory=dict)  # ERROR_KINDS -> count
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    error: str | None = None  # the run failed: why (its figures are zeros)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def server_cpu_us_per_call(self) -> float | None:
        return self.server_cpu_s / self.requests * 1e6 if self.server_cpu_s is not None and self.requests else None

    @property
    def client_cpu_us_per_call(self) -> float | None:
        return self.client_cpu_s / self.requests * 1e6 if self.requests else None


def failed(concurrency: int, why: str) -> WrkRun:
    return WrkRun(concurrency, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, [], error=why)


def parse_report(output: str, concurrency: int) -> WrkRun:
    """The WrkRun of a wrk run's stdout (the Lua script's WRK_JSON line); ValueError when there is none."""
    lines = [line for line in output.splitlines() if line.startswith(MARK)]
    if not lines:
        raise ValueError("wrk printed no WRK_JSON line (did done() run?)")
    doc = json.loads(lines[-1][len(MARK) :])
    ms = lambda key: round(float(doc[key]) / 1000.0, 4)  # noqa: E731
    return WrkRun(
        concurrency=concurrency,
        requests=int(doc["requests"]),
        duration_s=float(doc["duration_us"]) / 1e6,
        p50_ms=ms("p50_us"),
        p90_ms=ms("p90_us"),
        p99_ms=ms("p99_us"),
        p999_ms=ms("p999_us"),
        max_ms=ms("max_us"),
        mean_ms=ms("mean_us"),
        cdf=[(round(us / 1000.0, 4), round(p, 4)) for us, p in doc["cdf"]],
        errors={kind: int(doc[kind]) for kind in ERROR_KINDS},
    )


def command(exe: str, url: str, concurrency: int, seconds: float, timeout_s: float) -> list[str]:
    """One wrk thread whatever the concurrency: its epoll loop keeps 8 connections busy on a fraction of a core,
    and a second thread would take a core from the 2 the servers share."""
    whole = max(1, math.ceil(seconds))
    timeout = max(1, math.ceil(timeout_s))
    return [exe, "-t1", f"-c{concurrency}", f"-d{whole}s", f"--timeout={timeout}s", "-s", str(SCRIPT), url]


def run(
    exe: str,
    url: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.0,
    server_pid: int | None = None,
    timeout_s: float = 5.0,
    cdf_points: int = CDF_POINTS,
) -> WrkRun:
    """Warm-up (when warmup_s > 0) then one measured closed-loop run of `body` POSTed to `url`."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        env = {
            **os.environ,
            "WRK_BODY": str(body_file),
            "WRK_CONTENT_TYPE": content_type,
            "WRK_CDF_POINTS": str(cdf_points),
        }
        limit = duration_s + warmup_s + timeout_s + 30.0  # wrk stops itself; this only guards a hang
        if warmup_s > 0:
            subprocess.run(
                command(exe, url, concurrency, warmup_s, timeout_s), env=env, capture_output=True, timeout=limit
            )
        cpu0 = tree_cpu_s(server_pid) if server_pid else None
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.monotonic()
        try:
            done = subprocess.run(
                command(exe, url, concurrency, duration_s, timeout_s),
                env=env,
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            return failed(concurrency, f"wrk did not finish within {limit:.0f} s")
        wall = time.monotonic() - wall0
        cpu = tree_cpu_s(server_pid) - cpu0 if server_pid and cpu0 is not None else None
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        return failed(concurrency, f"wrk exited {done.returncode}: {' / '.join(lines[-3:])}")
    try:
        result = parse_report(done.stdout, concurrency)
    except (ValueError, KeyError) as exc:
        return failed(concurrency, f"unreadable wrk report: {exc}")
    result.server_cpu_s = cpu
    result.client_cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if not result.duration_s:
        result.duration_s = wall
    return result
