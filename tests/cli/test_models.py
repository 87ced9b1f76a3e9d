"""`sibyl models ...` against a folder store: what an operator types, what it prints, how it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from sibyl.cli.main import main
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore
from tests.support.onnxgen import publish_logistic


def test_rollback_twice_from_v3_goes_to_v2_then_v1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = Catalog(FileStore(tmp_path))
    for v in ("1", "2", "3"):
        publish_logistic(catalog, "m", v)
        assert main(["models", "promote", "p", f"m@{v}", "--store", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["models", "rollback", "p", "--store", str(tmp_path)]) == 0
    assert main(["models", "rollback", "p", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "predictor p: rolled back, primary is now m@2",
        "predictor p: rolled back, primary is now m@1",
    ]
    assert catalog.read_predictor("p").primary == "m@1"
    assert main(["models", "rollback", "p", "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sibyl: error: predictor 'p' has no earlier primary to roll back to"]
    assert main(["models", "history", "p", "--store", str(tmp_path)]) == 0
    actions = [line.split()[2:5] for line in capsys.readouterr().out.splitlines()]
    assert [a[0] for a in actions] == ["promote", "promote", "promote", "rollback", "rollback"]
