"""Client.report_outcomes and AsyncClient.report_outcomes against `sibyl serve`: row dicts and columns land in the
outcome file beside the prediction log, in calls of at most per_call; what the client can tell is wrong, it says."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from sibyl.client import AsyncClient, Client
from sibyl.errors import InvalidArgument
from tests.support.inproc import serve_subprocess


def outcome_lines(path: Path, n: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(text := path.read_text().splitlines()) >= n:
            return [json.loads(line) for line in text]
        time.sleep(0.02)
    raise AssertionError(f"{path} did not get {n} lines")


def test_rows_and_columns_reach_the_outcome_file_through_sibyl_serve(tmp_path: Path) -> None:
    proc, port, _ = serve_subprocess(tmp_path, "--metrics-port", "0")
    try:
        with Client(f"127.0.0.1:{port}", timeout_s=10) as client:
            prediction = client.predict("p", [{"amount": 1.0}, {"amount": 2.0}, {"amount": 3.0}])
            pid = prediction.prediction_id
            at = datetime(2026, 12, 6, 10, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1)))
            rows = client.report_outcomes(
                [{"prediction_id": pid, "row": 0, "value": 1.0, "observed_at": at, "weight": 3.0}]
            )
            columns = client.report_outcomes(
                prediction_ids=[pid, pid], rows=np.array([1, 2]), values=np.array([0.0, 1.0]), weights=[1.0, 0.5]
            )
            times = np.array(["2026-12-06T09:00:00.000000001", "2026-12-06T09:00:01"], dtype="datetime64[ns]")
            stamped = client.report_outcomes(prediction_ids=[pid, pid], values=[1, 0], observed_at=times)
            split = client.report_outcomes(prediction_ids=[pid] * 25, values=[1.0] * 25, per_call=10)
            with pytest.raises(grpc.RpcError) as refused:
                client.report_outcomes(prediction_ids=["nope"], values=[1.0])
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "outcomes[0].prediction_id" in (refused.value.details() or "")

        async def from_asyncio() -> int:
            async with AsyncClient(f"127.0.0.1:{port}", timeout_s=10) as aclient:
                return await aclient.report_outcomes([{"prediction_id": pid, "value": 0.0, "row": 2}])

        async_count = asyncio.run(from_asyncio())
        got = outcome_lines(tmp_path / "outcomes.jsonl", 31)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (rows, columns, stamped, split, async_count) == (1, 2, 2, 25, 1)
    assert got[0] == {
        "prediction_id": pid,
        "row": 0,
        "value": 1.0,
        "observed_at_unix_nanos": str(
            int(datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC).timestamp()) * 10**9 + 250_000_000
        ),
        "weight": 3.0,
    }
    assert [(g["row"], g["value"], g["weight"]) for g in got[1:3]] == [(1, 0.0, 1.0), (2, 1.0, 0.5)]
    first_ns = int(datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC).timestamp()) * 10**9
    assert [int(g["observed_at_unix_nanos"]) for g in got[3:5]] == [first_ns + 1, first_ns + 10**9]
    assert got[-1]["row"] == 2 and got[-1]["value"] == 0.0


def test_what_the_client_can_tell_is_wrong_it_says_before_sending() -> None:
    with Client("127.0.0.1:1", timeout_s=1) as client:  # nothing listens: nothing must be sent
        with pytest.raises(InvalidArgument, match="no timezone"):
            client.report_outcomes(prediction_ids=["a" * 32], values=[1.0], observed_at=datetime(2026, 1, 1))
        with pytest.raises(InvalidArgument, match="values has 1 items for 2 prediction_ids"):
            client.report_outcomes(prediction_ids=["a" * 32, "b" * 32], values=[1.0])
        with pytest.raises(InvalidArgument, match="unknown field 'label'"):
            client.report_outcomes([{"prediction_id": "a" * 32, "label": 1.0}])
        with pytest.raises(InvalidArgument, match="give outcomes as row dicts, or as columns"):
            client.report_outcomes()


def test_accepted_outcomes_are_on_disk_after_a_graceful_stop(tmp_path: Path) -> None:
    """SIGTERM drains and closes the outcome log: every accepted outcome is in the file when the process exits."""
    proc, port, _ = serve_subprocess(tmp_path, "--metrics-port", "0")
    try:
        with Client(f"127.0.0.1:{port}", timeout_s=10) as client:
            accepted = client.report_outcomes(prediction_ids=["c" * 32] * 100, values=[1.0] * 100)
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert (accepted, code) == (100, 0)
    assert len((tmp_path / "outcomes.jsonl").read_text().splitlines()) == 100


def test_with_workers_each_writes_its_own_outcome_file(tmp_path: Path) -> None:
    proc, port, _ = serve_subprocess(tmp_path, "--workers", "2", "--metrics-port", "0")
    try:
        with Client(f"127.0.0.1:{port}", timeout_s=10) as client:
            accepted = sum(client.report_outcomes(prediction_ids=[f"{i:032x}"], values=[1.0]) for i in range(40))
    finally:
        proc.terminate()
        code = proc.wait(timeout=60)
    files = sorted(p.name for p in tmp_path.glob("outcomes*.jsonl"))
    assert (accepted, code) == (40, 0)
    assert set(files) <= {"outcomes.worker-0.jsonl", "outcomes.worker-1.jsonl"} and files
    kept = [json.loads(line) for name in files for line in (tmp_path / name).read_text().splitlines()]
    assert sorted(k["prediction_id"] for k in kept) == [f"{i:032x}" for i in range(40)]
