"""`python -m benchmarks` is the benchmark suite's one door: it runs from a checkout, every flag has help, a bad
argument is one readable line, and the `sibyl` CLI has no bench command (benchmarks/ is not in the wheel)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks.cli import add_arguments
from sibyl.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]


def run_benchmarks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_every_benchmark_flag_has_help() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    missing = [a.option_strings for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, f"flags without help: {missing}"


def test_python_m_benchmarks_prints_its_help() -> None:
    done = run_benchmarks("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m benchmarks") and "--with-peers" in done.stdout


def test_a_bad_argument_is_one_line_and_exit_code_2() -> None:
    done = run_benchmarks("--only", "no-such-entry", "--out", str(REPO / "bench-out-never-written"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("benchmarks: error: unknown entries ['no-such-entry']")
    assert not (REPO / "bench-out-never-written").exists()


def test_the_sibyl_cli_has_no_bench_command() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "bench" not in commands and {"serve", "models", "score"} <= set(commands)
