"""What benchmarks.scenarios.tail reads from a running `sibyl serve`, and how: the sitecustomize that records its
GC pauses and threads (and the py-spy clock anchor), its threads' schedstat, py-spy's chrometrace of the GIL holders,
and the console exporter's spans. Every instant is CLOCK_MONOTONIC ns, which the server and the client share."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

SITECUSTOMIZE = '''"""Installed by benchmarks.scenarios.tail on the server's PYTHONPATH only."""
import gc, json, os, signal, sys, threading, time
_dump_to = os.environ.get("SIBYL_TAIL_DUMP")
if _dump_to:
    _pauses, _marks, _began = [], [], [0]
    def _on_gc(phase, info):
        if phase == "start":
            _began[0] = time.monotonic_ns()
        else:
            _pauses.append((_began[0], time.monotonic_ns(), info["generation"], threading.get_native_id()))
    gc.callbacks.append(_on_gc)
    if os.environ.get("SIBYL_TAIL_GC_THRESHOLD"):
        gc.set_threshold(*(int(x) for x in os.environ["SIBYL_TAIL_GC_THRESHOLD"].split(",")))
    def _dump(signum, frame):
        doc = {"pid": os.getpid(), "gc": _pauses, "marks": _marks, "threshold": gc.get_threshold(),
               "switch_interval_s": sys.getswitchinterval(), "frozen": gc.get_freeze_count(),
               "threads": {t.native_id: t.name for t in threading.enumerate()}}
        with open(_dump_to + ".tmp", "w") as f:
            json.dump(doc, f)
        os.replace(_dump_to + ".tmp", _dump_to)
    def _tail_marker(signum, frame):  # a 20 ms spin py-spy sees: anchors its clock to CLOCK_MONOTONIC
        began = time.monotonic_ns()
        _marks.append(began)
        while time.monotonic_ns() - began < 20_000_000:
            pass
    signal.signal(signal.SIGUSR2, _dump)
    signal.signal(signal.SIGUSR1, _tail_marker)
'''
CLIENT = -1  # Tasks: the load generator's thread
HOLD_CAP_NS = 2_000_000  # two py-spy samples at 1 kHz


class Tasks:
    """The server's threads' schedstat (run ns, run-queue wait ns), files kept open and re-read with pread; last,
    the load generator's own thread (tid CLIENT), whose waits for a core are in the measured latency too."""

    def __init__(self, pid: int) -> None:
        self.tids, self.fds, self.comm = [], [], {}
        for entry in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
            with contextlib.suppress(OSError):
                self.fds.append(os.open(f"/proc/{pid}/task/{entry}/schedstat", os.O_RDONLY))
                self.tids.append(int(entry))
                self.comm[int(entry)] = Path(f"/proc/{pid}/task/{entry}/comm").read_text().strip()
        self.fds.append(os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY))
        self.tids.append(CLIENT)

    def read(self) -> list[int]:
        out = []
        for fd in self.fds:
            try:
                run, wait, _ = os.pread(fd, 96, 0).split()
                out += (int(run), int(wait))
            except (OSError, ValueError):  # a thread that ended: no more time
                out += (0, 0)
        return out

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def thread_label(tid: int, names: dict[int, str], comm: dict[int, str], pid: int) -> str:
    if tid == pid:
        return "MainThread (event loop)"
    if tid == CLIENT:
        return "client"
    name = names.get(tid)
    if name:
        return re.sub(r"[-_]\d+$", "", name)
    return "native:" + re.sub(r"[-_:]?\d+$", "", comm.get(tid, "?"))


def overlap(windows: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Per window (start, end): the ns of `spans` (start, end, sorted by start) inside it."""
    out = np.zeros(len(windows))
    if not len(spans):
        return out
    for i, (a, b) in enumerate(windows):
        lo = max(0, int(np.searchsorted(spans[:, 0], a)) - 1)
        hi = int(np.searchsorted(spans[:, 0], b))
        s = spans[lo:hi]
        out[i] = np.clip(np.minimum(s[:, 1], b) - np.maximum(s[:, 0], a), 0, None).sum()
    return out


def gil_segments(path: Path, dump: dict) -> tuple[list[tuple[int, int, int, str]], bool]:
    """py-spy chrometrace -> GIL holder segments (start ns, end ns, native tid, innermost frame), CLOCK_MONOTONIC.

    With --gil each sample holds only the GIL holder's stack, and chrometrace writes an event only where a thread's
    stack changed since its own previous sample: the holder of an event is taken to hold the GIL until the next
    event of any thread, at most HOLD_CAP_NS (a holder that stays on one line longer is undercounted)."""
    events = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
    stacks: dict[int, list[str]] = defaultdict(list)
    native: dict[int, int] = {}
    seen: list[tuple[int, int, str]] = []
    for e in events:
        tid, ts = e["tid"], int(e["ts"] * 1000)
        m = re.match(r"thread \((\d+)\)", e["name"])
        if m:
            native[tid] = int(m.group(1))
        if e["ph"] == "B":
            stacks[tid].append(e["name"])
        elif stacks[tid]:
            stacks[tid].pop()
        if stacks[tid]:
            if seen and seen[-1][0] == ts and seen[-1][1] == native.get(tid, 0):
                seen.pop()  # one sample: keep its last (innermost) frame
            seen.append((ts, native.get(tid, 0), stacks[tid][-1]))
    out = [
        (a, min(b, a + HOLD_CAP_NS), t, f)
        for (a, t, f), (b, _, _) in zip(seen, [*seen[1:], seen[-1]], strict=True)
        if b > a
    ]
    marker = next((s for s in out if s[3] == "_tail_marker"), None)
    if marker is None or not dump.get("marks"):
        return out, False
    shift = dump["marks"][-1] - marker[0]
    return [(a + shift, b + shift, t, f) for a, b, t, f in out], True


def console_spans(log: Path, offset_ns: int, skip: int = 0) -> np.ndarray:
    """The log's `sibyl.predict` spans as rows (start, end, route, features, infer, encode) in CLOCK_MONOTONIC ns."""

    def ns(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e6) * 1000 - offset_ns

    with log.open("rb") as f:
        f.seek(skip)  # the log's bytes before this cell
        text = f.read().decode(errors="replace")
    decoder, pos, spans = json.JSONDecoder(), 0, {}
    while (pos := text.find('{\n    "name"', pos)) >= 0:
        span, pos = decoder.raw_decode(text, pos)
        ctx = span["context"]["trace_id"]
        spans.setdefault(ctx, {})[span["name"]] = ns(span["end_time"]) - ns(span["start_time"])
        if span["name"] == "sibyl.predict":
            spans[ctx]["start"], spans[ctx]["end"] = ns(span["start_time"]), ns(span["end_time"])
    stages = ("start", "end", "route", "features", "infer", "encode")
    rows = [[s.get(k, 0) for k in stages] for s in spans.values() if "start" in s]
    return np.array(sorted(rows), dtype=np.int64).reshape(-1, len(stages))
