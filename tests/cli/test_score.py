"""`sibyl score`: a file scored through a running server's PredictStream, or in-process; same scores."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sibyl.cli.main import main
from tests.cli.input_files import ROWS, write_input
from tests.support.inproc import CONSUMERS, PRIMARY_WEIGHTS, running_server
from tests.support.onnxgen import expected_scores


def read_output(path: Path) -> tuple[list[str], list[float]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"order_id", "consumer_id", "score", "model"}
    return [r["order_id"] for r in rows], [float(r["score"]) for r in rows]


def score(*args: str) -> int:
    return main(["score", *args, "--predictor", "p", "--batch-rows", "300", "--quiet"])


async def test_score_through_a_server_and_in_process(
    make_store: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(CONSUMERS)
    matrix = write_input(store / "in.csv")
    expected = expected_scores(PRIMARY_WEIGHTS, -0.5, matrix)
    features = {"backend": "memory", "memory_file": str(store / "features.jsonl")}
    ids = "order_id,consumer_id"
    async with running_server(store, features=features) as server:
        code = await asyncio.to_thread(
            score, str(store / "in.csv"), str(store / "remote.csv"), "--target", f"127.0.0.1:{server.port}",
            "--entity-columns", "consumer_id", "--id-columns", ids,
        )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    order, remote = read_output(store / "remote.csv")
    assert order == [f"o{i}" for i in range(ROWS)], "input order kept although the stream answers out of order"
    np.testing.assert_allclose(remote, expected, rtol=1e-5)

    env = {"SIBYL_FEATURES__BACKEND": "memory", "SIBYL_FEATURES__MEMORY_FILE": str(store / "features.jsonl")}
    env |= {"SIBYL_PREDLOG__PATH": str(store / "log.jsonl"), "SIBYL_PREDLOG__SPOOL_DIR": str(store / "spool")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        code = await asyncio.to_thread(
            score, str(store / "in.csv"), str(store / "local.csv"), "--in-process", "--store",
            f"file://{store / 'store'}", "--entity-columns", "consumer_id", "--id-columns", ids,
        )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert read_output(store / "local.csv") == (order, remote), "in-process and server scores are equal"


async def test_parquet_in_and_out(make_store: Callable[..., Path]) -> None:
    store = make_store(CONSUMERS)
    pq = pytest.importorskip("pyarrow.parquet")
    matrix = write_input(store / "in.csv")
    pacsv = pytest.importorskip("pyarrow.csv")
    pq.write_table(pacsv.read_csv(store / "in.csv"), store / "in.parquet")
    features = {"backend": "memory", "memory_file": str(store / "features.jsonl")}
    async with running_server(store, features=features) as server:
        code = await asyncio.to_thread(
            score, str(store / "in.parquet"), str(store / "out.parquet"), "--target", f"127.0.0.1:{server.port}",
            "--id-columns", "order_id,consumer_id",
        )  # fmt: skip
    assert code == 0
    out = pq.read_table(store / "out.parquet").to_pydict()
    assert out["order_id"] == [f"o{i}" for i in range(ROWS)]
    np.testing.assert_allclose(out["score"], expected_scores(PRIMARY_WEIGHTS, -0.5, matrix), rtol=1e-5)


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("consumer_id,amount\nc1,abc\n", [], "row 1, column 'amount': 'abc' is not a number"),
        ("consumer_id,amount\nc1,1,2\n", [], "line 2: 3 fields"),
        ("", [], "is empty"),
        ("consumer_id,amount\nc1,1\n", ["--id-columns", "order_id"], "'order_id' is not in the input"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list[str], message: str
) -> None:
    (tmp_path / "in.csv").write_text(content)
    code = score(str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), "--target", "127.0.0.1:1", *args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_target_or_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.csv").write_text("amount\n1\n")
    assert score(str(tmp_path / "in.csv"), str(tmp_path / "out.csv")) == 2
    assert "--target" in capsys.readouterr().err
    assert score(str(tmp_path / "in.csv"), str(tmp_path / "out.txt"), "--target", "127.0.0.1:1") == 2
    assert "use a .csv or .parquet" in capsys.readouterr().err


def test_in_process_is_the_batch_scorer_no_log_no_thread(
    make_store: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--in-process runs sibyl.batch: no predictions.jsonl, no background thread; a typo'd column is one line."""
    import threading

    store = make_store(CONSUMERS)
    write_input(store / "in.csv")
    work = store / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SIBYL_FEATURES__BACKEND", "memory")
    monkeypatch.setenv("SIBYL_FEATURES__MEMORY_FILE", str(store / "features.jsonl"))
    threads = threading.active_count()
    flags = ("--in-process", "--store", f"file://{store / 'store'}", "--id-columns", "order_id,consumer_id")
    assert score(str(store / "in.csv"), str(work / "out.csv"), *flags) == 0, capsys.readouterr().err
    assert threading.active_count() == threads
    assert sorted(p.name for p in work.iterdir()) == ["out.csv"], "no prediction log, no spool"
    (store / "typo.csv").write_text("consumer_id,amount,ratng\nc1,1,2\n")
    assert score(str(store / "typo.csv"), str(work / "typo.csv"), *flags[:3]) == 2
    err = capsys.readouterr().err
    assert "rows 1-1: unknown feature(s) ['ratng'] for m@1" in err and "Traceback" not in err
