"""The one stdout line `sibyl serve` prints once its port serves (one process or a supervisor of workers).

Launchers wait for it and read the ports from it with `parse_serving_line` (tests/support/inproc.py,
benchmarks/scenarios/servers.py).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Also matches the benchmark echo and peer servers' "<name> serving on HOST:PORT" (no metrics part: port 0).
SERVING_RE = re.compile(
    r"serving on (\S+):(\d+)(?: with \d+ workers)?(?: \(metrics :(\d+)\))?(?: http on (\S+):(\d+))?"
)


class Serving(NamedTuple):
    host: str
    port: int
    metrics_port: int
    http_port: int = 0  # the KServe V2 REST port; 0 when REST is off
    http_host: str = ""


def serving_line(
    host: str,
    port: int,
    metrics_port: int,
    workers: int | None = None,
    http: tuple[str, int] | None = None,
) -> str:
    """metrics_port 0: no metrics endpoint; workers: the supervisor's count (None for a single process);
    http: the REST address (None when REST is off)."""
    with_workers = f" with {workers} workers" if workers is not None else ""
    with_http = f" http on {http[0]}:{http[1]}" if http is not None else ""
    return f"sibyl serving on {host}:{port}{with_workers} (metrics :{metrics_port}){with_http}"


def parse_serving_line(text: str) -> Serving | None:
    """The ports from the first serving line in `text` (a process's output so far), or None before it is printed."""
    m = SERVING_RE.search(text)
    if m is None:
        return None
    return Serving(m.group(1), int(m.group(2)), int(m.group(3) or 0), int(m.group(5) or 0), m.group(4) or "")
