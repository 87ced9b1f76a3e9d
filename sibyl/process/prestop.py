"""Kubernetes preStop hook: `python -m sibyl.process.prestop [--sleep S] [--max-wait S] [--spool-dir DIR]`.

Runs while the server still serves, before the kubelet sends SIGTERM:

1. sleeps `--sleep` seconds, so endpoints and client resolvers drop the pod and calls stop arriving;
2. waits, up to `--max-wait` seconds, until the prediction-log spool (`predlog.spool_dir`, every worker's
   folder under it) holds no record: the running server replays it to Kafka meanwhile. A broker that is still
   down when the wait ends leaves the rest on the volume, for the next process that opens it.

Always exits 0 (a failed hook would only be logged by the kubelet, which sends SIGTERM anyway); prints one line
saying what is left. Bounded: it never waits longer than sleep + max-wait.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sibyl.predlog.spool import MAGIC, SUFFIX


def pending_bytes(spool_dir: Path) -> int:
    """Bytes of records in spool segments under spool_dir (a replayed segment is deleted, so: still to send)."""
    total = 0
    for path in spool_dir.rglob(f"*{SUFFIX}"):
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # deleted by the replay as we looked
            continue
        total += max(0, size - len(MAGIC))
    return total


def wait_for_replay(spool_dir: Path, max_wait_s: float, poll_s: float = 0.5) -> tuple[int, float]:
    """(bytes still pending, seconds waited) once the spool is empty or max_wait_s has passed."""
    start = time.monotonic()
    deadline = start + max_wait_s
    left = pending_bytes(spool_dir)
    while left and time.monotonic() < deadline:
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        left = pending_bytes(spool_dir)
    return left, time.monotonic() - start


def _default_spool_dir() -> str:
    from sibyl.config import load_settings

    try:
        return load_settings().predlog.spool_dir
    except Exception:  # a broken config must not turn the hook into a failure: the server reports it
        return "spool"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sibyl.process.prestop", description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds to keep serving first (default 5)")
    parser.add_argument("--max-wait", type=float, default=60.0, help="longest wait for the spool replay (60)")
    parser.add_argument("--spool-dir", help="default: predlog.spool_dir ($SIBYL_PREDLOG__SPOOL_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spool_dir = Path(args.spool_dir or _default_spool_dir())
    time.sleep(max(0.0, args.sleep))
    left, waited = wait_for_replay(spool_dir, max(0.0, args.max_wait))
    if left:
        print(f"prestop: {left} bytes still spooled in {spool_dir} after {waited:.1f} s; they stay on the volume")
    else:
        print(f"prestop: spool {spool_dir} empty after {waited:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
