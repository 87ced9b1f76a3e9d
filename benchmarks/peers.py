"""Peers (MLServer, Triton) serving the same model: optional, each in its own venv. Filled in last."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.suite import Plan, Runner


def run_peers(plan: Plan, runner: Runner, names: list[str]) -> None:
    for name in names:
        runner.skip(name, "peer", f"{name} serving gbdt@1", "not implemented yet")
