"""Labelled rows the quality tests share: random and adversarial (ties, all-equal scores, 0/1 predictions, one
class, zero and fractional weights, float32 scores), each a Case with fixed seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Case:
    name: str
    y: NDArray[np.int64]
    s: NDArray[np.floating]
    w: NDArray[np.float64] | None

    @property
    def both_classes(self) -> bool:
        weights = np.ones(self.y.size) if self.w is None else self.w
        return bool(weights[self.y == 1].sum() > 0 and weights[self.y == 0].sum() > 0)

    def __repr__(self) -> str:  # pytest ids
        return self.name


def _informative(rng: np.random.Generator, n: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = rng.integers(0, 2, n)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(0.0, 1.0, n) + 1.2 * (y - 0.5))))
    return y, s


def cases() -> list[Case]:
    rng = np.random.default_rng(20261206)
    y, s = _informative(rng, 2000)
    out = [
        Case("random", y, s, None),
        Case("random-weighted", y, s, rng.gamma(1.0, 2.0, y.size)),
        Case("ties-rounded", y, np.round(s, 1), None),
        Case("ties-weighted", y, np.round(s, 2), rng.integers(1, 5, y.size).astype(np.float64)),
        Case("zero-weights", y, s, np.where(rng.random(y.size) < 0.3, 0.0, rng.random(y.size))),
        Case("all-equal-scores", y, np.full(y.size, 0.37), None),
        Case("zero-one-predictions", y, rng.integers(0, 2, y.size).astype(np.float64), None),
        Case("confident-right-and-wrong", y, np.where(rng.random(y.size) < 0.9, y, 1 - y).astype(np.float64), None),
        Case("on-bin-edges", y, rng.integers(0, 11, y.size) / 10.0, None),
        Case("float32", y, s.astype(np.float32), None),
        Case("float32-weighted-ties", y, np.round(s, 3).astype(np.float32), rng.random(y.size)),
        Case("two-rows", np.array([0, 1]), np.array([0.2, 0.7]), None),
        Case("perfect", y, np.where(y == 1, 0.9, 0.1), None),
        Case("one-class-positive", np.ones(50, dtype=np.int64), rng.random(50), None),
        Case("one-class-negative", np.zeros(50, dtype=np.int64), rng.random(50), None),
        Case("positives-weigh-nothing", y, s, np.where(y == 1, 0.0, 1.0)),
    ]
    return out


CASES = cases()
TWO_CLASS = [c for c in CASES if c.both_classes]
