"""What a test on a batch engine (Spark, Ray) needs: the engine's package (a skip elsewhere, a failure in CI), Java
for Spark, and an environment in which the engine's workers import this checkout."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.needs import in_ci


def requires(module: str, hint: str) -> ModuleType:
    """The module, or a skip (a failure in CI, CI=true) saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed: {hint}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def requires_java() -> None:
    if shutil.which("java") is None:
        message = "java not found: apt-get install openjdk-17-jre-headless (bash scripts/test.sh does)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@contextlib.contextmanager
def worker_env() -> Iterator[None]:
    """Engine workers (Spark's Python workers, Ray's actors) import this checkout, not whatever copy of sibyl the
    environment's editable install points at, and run this interpreter."""
    root = str(Path(__file__).resolve().parents[2])
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYSPARK_PYTHON")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, saved["PYTHONPATH"]) if p)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
