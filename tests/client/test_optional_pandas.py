"""pandas is optional (`sibyl[pandas]`): without it, a DataFrame asked for says which extra to install."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sibyl.client.frames import ModelResult, Prediction
from sibyl.errors import MissingDependency


def _prediction() -> Prediction:
    scores = np.array([[0.25], [0.75]], dtype=np.float32)
    return Prediction("p-1", "r-1", (ModelResult("gbdt@1", "primary", "", scores),))


def test_to_pandas_without_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'sibyl\[pandas\]'"):
        _prediction().to_pandas()


def test_to_pandas_with_pandas_gives_the_scores() -> None:
    frame = _prediction().to_pandas()
    assert frame["score"].tolist() == [0.25, 0.75]
