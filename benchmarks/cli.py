"""`python -m benchmarks`: argument parsing and readable errors around the suite. The `sibyl` CLI has no bench
command: benchmarks/ is not in the wheel."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

TARGET_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
EPILOG = """examples:
  python -m benchmarks --quick --out bench-out                      # everything but the peers, short runs
  python -m benchmarks --with-peers --out benchmarks/results        # the full run with the whole peer field
  python -m benchmarks --with-peers --quick --only sibyl,peer-mlserver,peer-triton   # a peer smoke run
  python -m benchmarks --with-peers --quick --only http-sibyl,http-bentoml           # an HTTP field smoke run
  python -m benchmarks --only sibyl,redis-fill --target 127.0.0.1:50051
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Light on purpose: `python -m benchmarks --help` works with or without the bench extra installed."""
    p.add_argument("--out", default="bench-out", help="directory for results.json, results.md and PNGs")
    p.add_argument("--quick", action="store_true", help="short runs of everything, one repeat (a smoke run)")
    p.add_argument("--target", help="HOST:PORT of a running sibyl serving the benchmark store (see README)")
    p.add_argument("--only", help="comma-separated subset of the entries (see benchmarks/README.md)")
    p.add_argument("--skip", help="comma-separated entries to leave out (e.g. peer-mlserver,http-rayserve)")
    p.add_argument("--duration", type=float, help="seconds of each closed-loop run (after warm-up)")
    p.add_argument("--warmup", type=float, help="warm-up seconds excluded from each run")
    p.add_argument("--repeats", type=int, help="closed-loop and perf_analyzer runs per concurrency (default 3)")
    p.add_argument("--concurrency", help="comma-separated closed-loop concurrencies (default 1,8)")
    p.add_argument("--rows", help="comma-separated rows per call of the comparison (default 1,100)")
    p.add_argument("--sweep-repeats", type=int, help="open-loop sweeps per row (default 3; 0 = none)")
    p.add_argument("--step-duration", type=float, help="seconds of each sweep step")
    p.add_argument("--sweep-steps", type=int, help="most rate steps before bisection")
    p.add_argument("--fixed-duration", type=float, help="seconds of each fixed-rate scenario run")
    p.add_argument("--slo-ms", type=float, help="p99 latency objective of the sweep (default 10)")
    p.add_argument("--max-rps", type=float, help="never offer more than this rate in open loop (e.g. a smoke run)")
    p.add_argument("--clients", type=int, default=1, help="load-generator processes (spawned; histograms merged)")
    p.add_argument("--workers", type=int, default=1, help="sibyl worker processes of the local server")
    p.add_argument("--no-perf-analyzer", action="store_true", help="leave out the perf_analyzer rows")
    p.add_argument(
        "--with-peers",
        action="store_true",
        help="create the peers' and perf_analyzer's venvs (.bench-venvs/) if missing; install wrk with apt-get",
    )


class UsageError(ValueError):
    pass


def _names(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from benchmarks.suite import ALL_NAMES

    if not text:
        return default
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL_NAMES]
    if unknown:
        raise UsageError(f"unknown entries {unknown}; choose from {', '.join(ALL_NAMES)}")
    return names


def _counts(flag: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--{flag} takes comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"--{flag} values must be at least 1, got {text!r}")
    return values


def plan_from(args: argparse.Namespace) -> Any:
    from benchmarks.suite import ALL_NAMES, Plan

    if args.target and not TARGET_RE.match(args.target):
        raise UsageError(f"--target {args.target!r} must be HOST:PORT, e.g. 127.0.0.1:50051")
    only = _names(args.only, ALL_NAMES)
    skip = set(_names(args.skip, ()))
    overrides: dict[str, Any] = {
        "only": tuple(n for n in only if n not in skip),
        "clients": args.clients,
        "workers": args.workers,
        "target": args.target,
        "perf_analyzer": not args.no_perf_analyzer,
    }
    for flag, key in (
        ("duration", "duration_s"), ("warmup", "warmup_s"), ("step_duration", "step_s"),
        ("sweep_steps", "sweep_steps"), ("slo_ms", "slo_ms"), ("max_rps", "max_rps"),
        ("repeats", "repeats"), ("fixed_duration", "fixed_s"), ("sweep_repeats", "sweep_repeats"),
    ):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            if value < 0 or (value == 0 and flag not in ("warmup", "sweep_repeats")):
                raise UsageError(f"--{flag.replace('_', '-')} must be positive, got {value}")
            overrides[key] = value
    for flag, key in (("concurrency", "concurrency"), ("rows", "compare_rows")):
        values = _counts(flag, getattr(args, flag))
        if values is not None:
            overrides[key] = values
    if args.clients < 1 or args.workers < 1:
        raise UsageError("--clients and --workers must be at least 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if args.quick:
        return Plan.quick_plan(out, **overrides)
    return Plan(out=out, **overrides)


def _setup_peers(names: tuple[str, ...], perf_analyzer: bool) -> None:
    from benchmarks.load import perf_analyzer as pa
    from benchmarks.load import wrk
    from benchmarks.peers.entries import PEERS
    from benchmarks.peers.http_entries import http_entries
    from benchmarks.peers.setup import ensure

    venvs = {name: peer.venv for name, peer in PEERS.items()}
    venvs |= {name: e.venv for name, e in http_entries().items() if e.venv is not None}
    done: set[str] = set()
    for name in names:
        if name in venvs and venvs[name] not in done:
            done.add(venvs[name])
            print(f"[bench] {name}: creating or reusing its venv (pip, can take minutes)", file=sys.stderr)
            try:
                ensure(venvs[name])
            except Exception as exc:  # the run goes on; the peer is then skipped with its reason
                print(f"benchmarks: warning: {name}: venv setup failed: {exc}", file=sys.stderr)
    if any(n.startswith("http-") for n in names) and wrk.binary() is None:
        print("[bench] wrk: apt-get install -y wrk (the HTTP field's load client)", file=sys.stderr)
        try:
            wrk.install()
        except Exception as exc:  # its rows are then skipped with the command
            print(f"benchmarks: warning: wrk install failed: {exc}", file=sys.stderr)
    if perf_analyzer and pa.binary() is None:
        print("[bench] perf_analyzer: setting up its venv (scripts/setup_perf_analyzer.sh)", file=sys.stderr)
        try:
            pa.setup()
        except Exception as exc:  # its rows are then skipped with the command
            print(f"benchmarks: warning: perf_analyzer setup failed: {exc}", file=sys.stderr)


def execute(args: argparse.Namespace) -> int:
    try:
        from benchmarks.suite import run_suite
    except ImportError as exc:
        print(f"benchmarks: error: the suite needs the bench extra: pip install -e '.[bench]' ({exc})", file=sys.stderr)
        return 2
    try:
        plan = plan_from(args)
        plan.out.mkdir(parents=True, exist_ok=True)
        if args.with_peers:
            _setup_peers(plan.only, plan.perf_analyzer)
        run_suite(plan)
    except UsageError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def run(argv: list[str] | None = None) -> int:
    """Entry point for `python -m benchmarks` (and anything that wants the suite as a function)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="sibyl benchmark suite: the same client and protocol for sibyl, the echo floor and the peers "
        "(gRPC V2: MLServer, Triton, KServe; HTTP under wrk: KServe, MLServer, BentoML, LitServe, Ray Serve); CPU per call, closed and open loop, scenarios, cost growth -> JSON, markdown, PNG.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return execute(parser.parse_args(argv))
