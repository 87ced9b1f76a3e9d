"""Feast in a venv of its own (.bench-venvs/feast), created on first use and reused while its pins hold.

feast 0.67 would move pinned packages of ours (prometheus_client, typing_extensions, ...) and brings pandas,
pyarrow and dask for materialization: none of that belongs in sibyl's environment. The compatibility test drives
Feast through feast_driver.py in this venv, built and marked as the benchmark peers' are
(benchmarks.peers.setup.ensure_venv: uv, ~5 s from an empty cache; venv + pip without it, 40-70 s). After that a
marker check.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.peers.setup import ensure_venv

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".bench-venvs" / "feast"  # gitignored, beside the benchmark peers' venvs
PINS = ["feast[redis]==0.67.0"]
DRIVER = Path(__file__).with_name("feast_driver.py")


class FeastUnavailable(RuntimeError):
    """The venv could not be built (no index, no network): the test fails in CI and skips elsewhere."""


def ensure(timeout_s: float = 900.0) -> Path:
    """Feast's python, the venv built or reused."""
    try:
        return ensure_venv(VENV, PINS, timeout_s)
    except RuntimeError as exc:
        raise FeastUnavailable(str(exc)) from None


def run_feast(repo: Path, options: dict[str, Any], timeout_s: float = 300.0) -> dict[str, Any]:
    """feast_driver.py in Feast's venv: apply + materialize into options["connection"], then the reads."""
    out = repo.with_suffix(".json")
    repo.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(ensure()), str(DRIVER), str(repo), json.dumps(options), str(out)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise AssertionError(f"feast_driver.py failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result
