"""The monitor's join state (sibyl.monitor.state) on a real SQLite file: every outcome counted once, whatever the
order the two streams arrive in, across a crash between batches, and within the window and the byte budget."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from sibyl.monitor.records import Logged, OutcomeRow
from sibyl.monitor.state import HOUR_NS, PartitionState
from sibyl.quality.stats import BinaryStats

NOW = 1_800_000_000 * 10**9
DAY_S = 86_400.0


def pid(i: int) -> str:
    return f"{i:032x}"


def record(i: int, model: str, role: str, scores: list[float], at: int = NOW) -> Logged:
    return Logged(pid(i), "p", model, "1", role, at, len(scores), np.asarray(scores, np.float32))


def outcome(i: int, row: int, value: float, weight: float = 1.0) -> OutcomeRow:
    return OutcomeRow(pid(i), row, value, NOW, weight)


def stats_of(state: PartitionState, model: str, slice_: str = "all") -> BinaryStats:
    merged = BinaryStats()
    for (_predictor, m, s, _hour), st in state.aggregates.items():
        if state.text(m).split("\x1f")[0] == model and s == slice_:
            merged = merged.merge(st)
    return merged


@pytest.fixture
def state(tmp_path: Path) -> PartitionState:
    return PartitionState(tmp_path / "p0.db", window_s=DAY_S, max_bytes=1 << 30)


def test_outcomes_join_every_models_score_per_slice(state: PartitionState) -> None:
    rng = np.random.default_rng(0)
    n = 300
    primary, shadow, y = rng.random(n), rng.random(n), (rng.random(n) < 0.3).astype(float)
    labels = [["all", f"half={'a' if i < n // 2 else 'b'}"] for i in range(n)]
    state.add_predictions([(record(1, "gbdt", "primary", primary.tolist()), labels)])
    state.add_predictions([(record(1, "mlp", "shadow", shadow.tolist()), None)])
    state.add_outcomes([outcome(1, i, y[i]) for i in range(n)], now_ns=NOW)
    state.commit()
    assert state.counters["joined"] == n
    for model, scores in (("gbdt", primary), ("mlp", shadow)):
        s = stats_of(state, model)
        p32 = scores.astype(np.float32)
        assert s.auc() == pytest.approx(roc_auc_score(y, p32), abs=1e-9)
        assert s.log_loss() == pytest.approx(log_loss(y, p32.astype(np.float64)), abs=1e-9)
        half = stats_of(state, model, "half=a")
        assert half.n == n // 2
        assert half.auc() == pytest.approx(roc_auc_score(y[: n // 2], p32[: n // 2]), abs=1e-9)


def test_early_duplicate_late_and_unknown_outcomes_are_each_counted_once(state: PartitionState) -> None:
    state.add_outcomes([outcome(7, 0, 1.0)], now_ns=NOW)  # before its prediction
    state.add_outcomes([outcome(7, 0, 1.0)], now_ns=NOW)  # the same again, still early: a duplicate
    assert (state.counters["early"], state.counters["duplicate"]) == (1, 1)
    state.add_predictions([(record(7, "gbdt", "primary", [0.8]), [["all"]])])
    assert (state.counters["early"], state.counters["joined"]) == (0, 1)
    state.add_outcomes([outcome(7, 0, 0.0)], now_ns=NOW)  # a second outcome for a joined row
    assert state.counters["duplicate"] == 2
    stale = OutcomeRow(pid(8), 0, 1.0, NOW - int(2 * DAY_S * 1e9), 1.0)
    state.add_outcomes([stale], now_ns=NOW)
    assert state.counters["late"] == 1
    state.add_outcomes([outcome(9, 0, 1.0)], now_ns=NOW)  # its prediction never comes
    state.expire(now_ns=NOW + int(2 * DAY_S * 1e9))
    assert (state.counters["unknown"], state.counters["early"]) == (1, 0)
    assert stats_of(state, "gbdt").n == 0  # the hour of prediction 7 left the window too


def test_a_models_record_after_the_outcome_is_still_counted(state: PartitionState) -> None:
    state.add_predictions([(record(3, "gbdt", "primary", [0.9, 0.2]), [["all"], ["all"]])])
    state.add_outcomes([outcome(3, 0, 1.0), outcome(3, 1, 0.0)], now_ns=NOW)
    state.add_predictions([(record(3, "mlp", "shadow", [0.7, 0.4]), None)])
    assert stats_of(state, "mlp").n == 2 and stats_of(state, "mlp").auc() == 1.0


def test_a_crash_between_batches_loses_and_repeats_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p0.db"
    first = PartitionState(path, DAY_S, 1 << 30)
    first.add_predictions([(record(1, "gbdt", "primary", [0.1, 0.9]), [["all"], ["all"]])])
    first.set_offset("predictions", 100)
    first.commit()
    first.add_outcomes([outcome(1, 0, 0.0), outcome(1, 1, 1.0)], now_ns=NOW)
    first.set_offset("outcomes", 50)
    first.db.close()  # killed before commit: the outcomes and their offset are not durable
    again = PartitionState(path, DAY_S, 1 << 30)
    assert again.offset("predictions") == (100, "") and again.offset("outcomes") is None
    assert again.counters["joined"] == 0
    again.add_outcomes([outcome(1, 0, 0.0), outcome(1, 1, 1.0)], now_ns=NOW)  # read again from the stored offset
    again.set_offset("outcomes", 50)
    again.commit()
    third = PartitionState(path, DAY_S, 1 << 30)
    assert third.counters["joined"] == 2 and stats_of(third, "gbdt").n == 2


def test_the_byte_budget_evicts_the_oldest_rows(tmp_path: Path) -> None:
    state = PartitionState(tmp_path / "p0.db", DAY_S, max_bytes=2 * 1024 * 1024)
    for i in range(200):
        scores = np.random.default_rng(i).random(500).tolist()
        state.add_predictions([(record(i, "gbdt", "primary", scores, at=NOW + i * 10**9), None)])
        state.commit()
        state.expire(now_ns=NOW + i * 10**9)
    assert state.used_bytes() <= 2 * 1024 * 1024
    assert state.counters["evicted_budget"] > 0
    newest = state.db.execute("SELECT MAX(at) FROM rows").fetchone()[0]
    assert newest == NOW + 199 * 10**9  # the newest stay
    assert os.path.getsize(tmp_path / "p0.db") < 8 * 1024 * 1024


def test_hours_bucket_by_prediction_time(state: PartitionState) -> None:
    state.add_predictions([(record(1, "gbdt", "primary", [0.5], at=NOW - 3 * HOUR_NS), [["all"]])])
    state.add_outcomes([outcome(1, 0, 1.0)], now_ns=NOW)
    ((key, _),) = state.aggregates.items()
    assert key[3] == (NOW - 3 * HOUR_NS) // HOUR_NS


def test_numeric_outcomes_go_to_regression_statistics(state: PartitionState) -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    predicted = [12.0, 30.5, 7.25, 18.0]
    actual = [10.0, 33.0, 7.0, 25.5]
    state.add_predictions([(record(5, "eta", "primary", predicted), [["all"]] * 4)])
    state.add_outcomes([outcome(5, i, v) for i, v in enumerate(actual)], now_ns=NOW)
    state.commit()
    ((_, r),) = [(k, v) for k, v in state.regression.items() if k[2] == "all"]
    assert r.mae() == pytest.approx(mean_absolute_error(actual, predicted), abs=1e-9)
    assert r.rmse() == pytest.approx(mean_squared_error(actual, predicted) ** 0.5, abs=1e-9)
    assert stats_of(state, "eta").n == 0  # nothing of it is a binary label
    reopened = PartitionState(state.path, DAY_S, 1 << 30)
    assert [v.n for v in reopened.regression.values()] == [4]
