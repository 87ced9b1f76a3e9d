"""Where Triton's perf_analyzer is: SIBYL_PERF_ANALYZER, else on PATH (bash scripts/setup_perf_analyzer.sh puts
one in .bench-venvs/ and scripts/test.sh sets the variable)."""

from __future__ import annotations

import os
import shutil


def perf_analyzer() -> str | None:
    return os.environ.get("SIBYL_PERF_ANALYZER") or shutil.which("perf_analyzer")
