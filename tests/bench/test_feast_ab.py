"""benchmarks.peers.feast_ab: the Feast-style call from several checkouts, in turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.peers import feast_ab

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_folder_that_is_not_a_checkout_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        feast_ab.main([str(REPO_ROOT), str(tmp_path)])
    assert exited.value.code == 2
    assert f"{tmp_path} is not a sibyl checkout" in capsys.readouterr().err


@pytest.mark.slow
def test_each_checkout_is_timed_over_both_protocols_on_features_feast_wrote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One repeat of this checkout: real Feast materializes the store, sibyl serves from it, and every call's
    features came from the store (a defaulted call raises)."""
    assert feast_ab.main([str(REPO_ROOT), "--repeats", "1", "--requests", "50"]) == 0
    out = capsys.readouterr().out
    for protocol in ("rest", "grpc"):
        line = next(line for line in out.splitlines() if line.startswith(f"{REPO_ROOT} {protocol}: "))
        assert "p50_ms" in line and "cpu_ms" in line
