"""benchmarks.peers.feast_pipeline's timing: the pipelines' cases take turns, so each sees the same phases."""

from __future__ import annotations

import os

import pytest

from benchmarks.peers import feast_pipeline


def test_cases_take_turns_each_a_share_of_the_requests() -> None:
    calls: list[str] = []
    cases = [(name, lambda name=name: calls.append(name), [os.getpid()]) for name in ("a", "b", "c")]
    results = feast_pipeline.interleaved(cases, requests=7, blocks=3)  # type: ignore[arg-type]
    timed_calls = calls[3 * 50 :]  # after each case's warm-up
    assert calls[:150] == ["a"] * 50 + ["b"] * 50 + ["c"] * 50
    # blocks of 2, 2 and 3 calls (7 split three ways), the cases in the same order in every turn
    assert "".join(timed_calls) == "aabbcc" + "aabbcc" + "aaabbbccc"
    assert [r["case"] for r in results] == ["a", "b", "c"]
    for result in results:
        assert 0 <= result["p50_ms"] <= result["p99_ms"] <= result["p99.9_ms"]
        assert result["cpu_ms"] >= 0


def test_one_case_alone_is_timed_in_one_turn() -> None:
    calls: list[int] = []
    result = feast_pipeline.timed("one", lambda: calls.append(1), requests=20, pids=[os.getpid()])
    assert len(calls) == 50 + 20 and result["case"] == "one"


@pytest.mark.parametrize("args", [["--blocks", "0"], ["--requests", "5", "--blocks", "6"], ["--requests", "0"]])
def test_turns_that_cannot_be_filled_are_refused_in_one_line(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        feast_pipeline.main(args)
    assert exited.value.code == 2
    assert "--blocks must be between 1 and --requests" in capsys.readouterr().err


def test_ratios_put_each_case_over_the_composite() -> None:
    composite = {"p99_ms": 8.0, "cpu_ms": 4.0}
    out = feast_pipeline.ratios(
        1, composite, {"grpc": {"p99_ms": 2.0, "cpu_ms": 1.0}, "floor": {"p99_ms": 1.0, "cpu_ms": 0.5}}
    )
    assert out == {
        "ratios_to_composite": "1 rows",
        "grpc_p99": 0.25,
        "grpc_cpu": 0.25,
        "floor_p99": 0.125,
        "floor_cpu": 0.125,
    }
