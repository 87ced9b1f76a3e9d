"""mypy in strict mode passes on sibyl/ ([tool.mypy] in pyproject.toml says what is checked and what is relaxed).

The wheel ships py.typed: its annotations are a promise to the users' type checkers, and this test keeps it.
Run alone: `python -m pytest -q tests/test_types.py` (cold, about a minute: mypy caches in .mypy_cache/)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.typecheck
def test_mypy_strict_passes_on_sibyl() -> None:
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"mypy found errors (exit {run.returncode}):\n{run.stdout}{run.stderr}"
