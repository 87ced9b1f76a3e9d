"""After-response threads give the GIL back to the event loop: in bounded slices, and while calls are in flight.

The process has one GIL. A thread that runs Python holds it until it blocks or is asked to drop it, and it is only
asked after the waiting thread has waited a switch interval. So when the event loop needs the GIL (a call came in,
onnxruntime returned) while the log writer encodes a batch of lines or the records lane builds records, the call
waits for that batch, and a thread that takes the GIL while a call is in flight stretches the call. On this
project's box that was the largest part of a slow 1-row call (docs/design.md, "Where the tail comes from").

So an after-response thread `enroll()`s at start and calls `pace()` between its units of work (a job, a log line,
a verdict stage):

* after `slice` of work it gives the GIL back: it sleeps `PAUSE_S`, long enough for a thread waiting on the GIL to
  be woken and take it (a release and re-take with no sleep is usually won by the releasing thread);
* while calls are in flight (`GATE.enter`/`leave` around each admitted call, when pacing is on) it waits for the
  loop to go idle, up to `defer`, so its work fills the gaps between calls instead of the calls;
* a backlog of at least half its queue skips the wait (not the pause): the work must keep up, so nothing queued
  is dropped because of the pacing;
* a loop busy without gaps shows as more than one call in flight, or as a wait for idle the calls outlast: there
  pauses only add GIL hand-offs, so the thread works unpaced (for `BUSY_S` after such a wait).

Off by default (`server.gil_slice_ms` 0): on this project's 2-core box it cut 1-row p99 at one call at a time
(more with a shadow), but cost throughput at 8 concurrent calls, where the loop is busy between its calls in ways
the gate does not see (gRPC's own work); docs/performance.md#gil-pacing has the numbers.

`pace()` on a thread that did not enroll (the event loop, a scrape, a test) does nothing: the loop never waits for
itself. Process-wide, like the GIL it shares: servers in one process (tests, embedded) count their calls together.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

PAUSE_S = 0.000_05  # the kernel adds its timer slack (50 us by default): ~0.1 ms without the GIL
BACKLOG = 0.5  # share of its queue at which a thread stops waiting for idle gaps
BUSY_S = 0.01  # after a sign of a loop without idle gaps, work this long unpaced


@dataclass
class Pacing:
    slice_s: float = 0.0  # work between pauses; 0: no pacing (the default: docs/performance.md#gil-pacing)
    defer_s: float = 0.002  # longest wait for an idle gap while calls are in flight; 0: never wait


class Gate:
    """The calls in flight in this process; a paced thread waits on it for none to be."""

    def __init__(self) -> None:
        self.pacing = Pacing()
        self.in_flight = 0
        self._lock = threading.Lock()  # calls may be admitted on more than one event loop (embedded, tests)
        self._idle = threading.Event()  # set by the call that leaves the loop idle, when a thread waits for it
        self._waiting = False

    def configure(self, pacing: Pacing) -> None:
        self.pacing = pacing

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
            if self._waiting and not self.in_flight:
                self._waiting = False
                self._idle.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Until no call is in flight, at most timeout_s, without the GIL; False if the calls went on."""
        with self._lock:
            if not self.in_flight:
                return True
            self._idle.clear()
            self._waiting = True
        return self._idle.wait(timeout_s)


GATE = Gate()
_enrolled = threading.local()


class _Slice:
    __slots__ = ("began", "busy_until")

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.busy_until = 0.0  # after a wait the calls outlasted: no pacing until then


def enroll() -> None:
    """Make `pace()` act on the calling thread: call it first thing in an after-response thread."""
    _enrolled.slice = _Slice()


def pace(backlog: float = 0.0) -> None:
    """Between two units of an enrolled thread's work: after a slice, give the GIL back (module docstring).
    `backlog` is the share of the thread's queue still waiting (0 when it has none)."""
    current: _Slice | None = getattr(_enrolled, "slice", None)
    if current is None:
        return
    pacing = GATE.pacing
    now = time.perf_counter()
    if not pacing.slice_s or now - current.began < pacing.slice_s:
        return
    current.began = now
    if GATE.in_flight > 1 or now < current.busy_until:
        return  # calls queue on the loop: pauses would only add GIL hand-offs and cost throughput
    waits = GATE.in_flight and pacing.defer_s and backlog < BACKLOG
    if waits and not GATE.wait_idle(pacing.defer_s):  # blocks without the GIL; returns when the loop goes idle
        current.busy_until = time.perf_counter() + BUSY_S
        return
    time.sleep(PAUSE_S)
    current.began = time.perf_counter()
