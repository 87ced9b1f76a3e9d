"""CPU time of a server's whole process tree (from /proc) and of the load client itself, around one run; RSS.

Server: the sum of utime + stime (fields 14 and 15 of /proc/PID/stat, in clock ticks) over the server's
process and every descendant (worker processes, tritonserver and its Python-backend stubs), read before and
after the measured window. A process that exits inside the window takes its CPU with it; the servers here
keep their processes for the whole run. Client: `time.process_time()` of the load-generator process (every
thread), so a run where the client, not the server, was the bottleneck shows as client CPU near one core.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # gone, or not ours to read
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing one.
    return text[text.rindex(")") + 2 :].split()


def parents() -> dict[int, int]:
    """pid -> parent pid of every process we can read (field 4 of /proc/PID/stat)."""
    out = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                out[int(entry.name)] = int(fields[1])
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    kids: dict[int, list[int]] = {}
    for child, parent in parents().items():
        kids.setdefault(parent, []).append(child)
    seen, todo = [pid], list(kids.get(pid, ()))
    while todo:  # a pid tree has no cycles; `seen` guards against a pid reused mid-scan all the same
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += kids.get(p, ())
    return seen


def process_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: field 3 is index 0, so utime (14) and stime (15) are indices 11 and 12.
    return (int(fields[11]) + int(fields[12])) * TICK_S


def tree_cpu_s(pid: int) -> float:
    return sum(process_cpu_s(p) for p in tree(pid))


@dataclass
class Window:
    """CPU spent between begin() and end(): the server tree's (if a pid is given) and this process's."""

    server_pid: int | None = None
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    _server0: float = 0.0
    _client0: float = 0.0
    _wall0: float = 0.0
    _open: bool = False

    def begin(self) -> None:
        self._wall0, self._client0 = time.monotonic(), time.process_time()
        if self.server_pid is not None:
            self._server0 = tree_cpu_s(self.server_pid)
        self._open = True

    def end(self) -> None:
        if not self._open:  # the run ended before its measured window began
            return
        self._open = False
        if self.server_pid is not None:
            self.server_cpu_s = tree_cpu_s(self.server_pid) - self._server0
        self.client_cpu_s = time.process_time() - self._client0
        self.wall_s = time.monotonic() - self._wall0


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 when it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss(pid: int) -> list[dict[str, object]]:
    """[{"pid", "command", "rss_bytes"}] for pid and its descendants."""
    out = []
    for p in tree(pid):
        try:
            command = (PROC / str(p) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            command = "?"
        out.append({"pid": p, "command": command[:120], "rss_bytes": rss_bytes(p)})
    return out
