"""CPU seconds per thread of this process, read from the kernel at scrape time: which thread the CPU goes to.

`sibyl_thread_cpu_seconds_total{thread}`: one series per live Python thread, labelled with its name (the event
loop's thread, each after-response lane's threads, the log writers, the verdict flusher), plus `thread="other"`:
the process's CPU not on a live Python thread (gRPC's and onnxruntime's own C threads, threads that have ended), so
the series sum to the process's CPU time. Nothing runs on the request path: each scrape reads every thread's CPU
clock once (`clock_gettime` on the kernel's per-thread clock, nanosecond accounting, not tick samples).

Per process, like prometheus_client's process_* series: with several workers (multiprocess mode) the parent's
merged /metrics does not carry it. docs/observability.md#cpu-by-thread says how to read it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

OTHER = "other"
# threading's default names count up forever ("Thread-7 (target)"); one label for all of them keeps the series bounded.
_DEFAULT_NAME = re.compile(r"^Thread-\d+")


def thread_clock(native_id: int) -> int:
    """The kernel's CPU clock of one thread of this process (Linux: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).

    Built from the thread id rather than pthread_getcpuclockid(ident): a thread that has just ended makes
    clock_gettime fail with EINVAL instead of reading a freed pthread structure.
    """
    return ((~native_id) << 3) | 6


def thread_seconds() -> dict[str, float]:
    """CPU seconds of every live Python thread, by label (threads sharing a label add up), and OTHER."""
    seconds: dict[str, float] = {}
    on_threads = 0.0
    for thread in threading.enumerate():
        native_id = thread.native_id
        if native_id is None:  # not started yet
            continue
        try:
            used = time.clock_gettime(thread_clock(native_id))
        except OSError:  # ended between enumerate() and now
            continue
        label = _DEFAULT_NAME.sub("Thread-N", thread.name)
        seconds[label] = seconds.get(label, 0.0) + used
        on_threads += used
    # Read last, so OTHER never goes below zero from the threads' clocks moving on while we read them.
    seconds[OTHER] = max(0.0, time.clock_gettime(time.CLOCK_PROCESS_CPUTIME_ID) - on_threads)
    return seconds


class ThreadCpuCollector(Collector):
    """Exports thread_seconds() as a counter family at each scrape."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "sibyl_thread_cpu_seconds",
            "CPU seconds used by each thread of this process (other: C threads and ended threads).",
            labels=["thread"],
        )
        for label, used in sorted(thread_seconds().items()):
            family.add_metric([label], used)
        yield family
