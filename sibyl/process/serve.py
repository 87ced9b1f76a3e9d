"""`sibyl serve` in one process: run the server until SIGTERM/SIGINT, then drain."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from pathlib import Path

from sibyl.api.server import SibylServer
from sibyl.config import Settings
from sibyl.gil import GATE, Pacing
from sibyl.process.banner import serving_line
from sibyl.process.spools import adopt_orphans


async def serve(settings: Settings, ready: asyncio.Event | None = None, announce: bool = True) -> None:
    """Run until SIGTERM/SIGINT, then drain. Prints one line with the bound port once serving (announce=False:
    not, for a worker process, whose supervisor prints the line once every worker serves)."""
    sys.setswitchinterval(settings.server.gil_switch_ms / 1000)
    GATE.configure(Pacing(settings.server.gil_slice_ms / 1000, settings.server.gil_defer_ms / 1000))
    if settings.server.workers == 1:  # one process, spooling in spool_dir itself (a worker's folder is its own)
        adopt_orphans(Path(settings.predlog.spool_dir), None)
    server = SibylServer(settings)
    await server.start()
    # Everything loaded so far (modules, protobuf descriptors, models) lives as long as the process. Moved out
    # of the collector's reach, a full collection no longer scans it: no GC stalls in p99
    # (docs/performance.md#process-settings).
    gc.collect()
    gc.freeze()
    http = (settings.http.host or settings.server.host, server.http_port) if server.http_port else None
    if announce:
        print(serving_line(settings.server.host, server.port, server.metrics_port, http=http), flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.stop()))
    if ready is not None:
        ready.set()
    await server.wait()
