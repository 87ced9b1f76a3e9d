"""benchmarks/scenarios/quality.py runs end to end on a few rows and writes its table and JSON (the figures themselves
are for a quiet machine, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.scenarios import quality


def test_the_quality_benchmark_prints_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "quality.json"
    assert quality.main(["--rows", "600", "--batch", "100", "--repeats", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert len(figures) == 4 * 11 and len(table.splitlines()) == 2 + len(figures)
    assert {f["unit"] for f in figures} >= {"rows/CPU-s", "CPU ms", "B"}
    assert all(f["value"] > 0 for f in figures)
    assert quality.main(["--rows", "10"]) == 2
