"""A CLI failure is one line on stderr, `sibyl: error: ...`, without a traceback."""

from __future__ import annotations

import pytest


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sibyl: error: "), err
    return err[0]
