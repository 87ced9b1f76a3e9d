"""`python -m benchmarks` and `sibyl bench`: argument parsing and readable errors around the suite."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

TARGET_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
EPILOG = """examples:
  python -m benchmarks --quick --out bench-out          # every scenario and baseline, under 5 minutes
  python -m benchmarks --out benchmarks/results         # the full run (about 15 minutes)
  python -m benchmarks --only single-row,redis-fill --target 127.0.0.1:50051
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Light on purpose: `sibyl --help` builds this parser, with or without the bench extra installed."""
    p.add_argument("--out", default="bench-out", help="directory for results.json, results.md and PNGs")
    p.add_argument("--quick", action="store_true", help="short runs of everything (< 5 min)")
    p.add_argument("--target", help="HOST:PORT of a running sibyl serving the benchmark store (see README)")
    p.add_argument("--only", help="comma-separated subset of the scenarios and baselines (see benchmarks/README.md)")
    p.add_argument("--skip", help="comma-separated entries to leave out (e.g. peer-mlserver,peer-triton)")
    p.add_argument("--duration", type=float, help="seconds of each fixed-rate run (after warm-up)")
    p.add_argument("--warmup", type=float, help="warm-up seconds excluded from each fixed-rate run")
    p.add_argument("--step-duration", type=float, help="seconds of each sweep step")
    p.add_argument("--sweep-steps", type=int, help="most rate steps before bisection")
    p.add_argument("--slo-ms", type=float, help="p99 latency objective of the sweep (default 10)")
    p.add_argument("--max-rps", type=float, help="never offer more than this rate (e.g. a tiny smoke run)")
    p.add_argument("--clients", type=int, default=1, help="load-generator processes (spawned; histograms merged)")
    p.add_argument("--workers", type=int, default=1, help="sibyl worker processes of the local server")
    p.add_argument("--with-peers", action="store_true", help="create the peers' venvs (.bench-venvs/) when missing")


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
    }
    for flag, key in (
        ("duration", "duration_s"), ("warmup", "warmup_s"), ("step_duration", "step_s"),
        ("sweep_steps", "sweep_steps"), ("slo_ms", "slo_ms"), ("max_rps", "max_rps"),
    ):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            if (value <= 0 and flag != "warmup") or value < 0:
                raise UsageError(f"--{flag.replace('_', '-')} must be positive, got {value}")
            overrides[key] = value
    if args.clients < 1 or args.workers < 1:
        raise UsageError("--clients and --workers must be at least 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if args.quick:
        return Plan.quick_plan(out, **overrides)
    return Plan(out=out, **overrides)


def _setup_peers(names: tuple[str, ...]) -> None:
    from benchmarks.peers.entries import PEERS
    from benchmarks.peers.setup import ensure

    for name in names:
        if name in PEERS:
            print(f"[bench] {name}: creating or reusing its venv (pip, can take minutes)", file=sys.stderr)
            try:
                ensure(PEERS[name].venv)
            except Exception as exc:  # the run goes on; the peer is then skipped with its reason
                print(f"benchmarks: warning: {name}: venv setup failed: {exc}", file=sys.stderr)


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
            _setup_peers(plan.only)
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
        description="sibyl benchmark suite: open-loop load, scenarios, baselines, peers -> JSON, markdown, PNG.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return execute(parser.parse_args(argv))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`sibyl bench ...` (sibyl.cli.main finds this module in a checkout)."""
    parser = sub.add_parser("bench", help="run the benchmark suite (see benchmarks/README.md)", epilog=EPILOG)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_arguments(parser)
    parser.set_defaults(handler=lambda args, _settings: execute(args))
