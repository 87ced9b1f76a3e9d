"""Feast in a venv of its own (.bench-venvs/feast), created on first use and reused while its pins hold.

feast 0.67 would move pinned packages of ours (prometheus_client, typing_extensions, ...) and brings pandas,
pyarrow and dask for materialization: none of that belongs in sibyl's environment. The compatibility test drives
Feast through feast_driver.py in this venv. First build with uv (the test extra brings it): ~5 s from an empty
cache; with venv + pip instead, 40-70 s. After that a marker check.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".bench-venvs" / "feast"  # gitignored, beside the benchmark peers' venvs
PINS = ["feast[redis]==0.67.0"]
MARKER = "sibyl-feast.json"  # written last: a venv without it is half-installed and gets reinstalled
DRIVER = Path(__file__).with_name("feast_driver.py")


class FeastUnavailable(RuntimeError):
    """The venv could not be built (no index, no network): the test fails in CI and skips elsewhere."""


def ensure(timeout_s: float = 900.0) -> Path:
    """Feast's python, the venv built or reused."""
    python = VENV / "bin" / "python"
    try:
        if json.loads((VENV / MARKER).read_text()).get("pins") == PINS and python.exists():
            return python
    except (OSError, ValueError):
        pass
    (VENV / MARKER).unlink(missing_ok=True)
    if importlib.util.find_spec("uv") is not None:  # uv: seconds with a warm cache
        steps = [
            [sys.executable, "-m", "uv", "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(VENV)],
            [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(python), *PINS],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(VENV)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS],
        ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise FeastUnavailable(f"{' '.join(step[2:5])} failed building {VENV}:\n{done.stderr[-2000:]}")
    (VENV / MARKER).write_text(json.dumps({"pins": PINS}))
    return python


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
