"""`sibyl predict` and `sibyl score --target` call through sibyl.client: its token and TLS flags, its errors."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from sibyl.cli.main import main
from sibyl.client import AsyncClient, Tls
from tests.support.inproc import running_server
from tests.support.pki import Pki


async def test_predict_and_score_with_token_and_tls(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = Pki(tmp_path / "pki")
    amounts = [0.5, 1.5, -2.0]
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows([["order_id", "amount"], *[[f"o{i}", a] for i, a in enumerate(amounts)]])
    async with running_server(store, security={**pki.settings(), "tokens": ["t0k"]}) as server:
        target = f"localhost:{server.port}"
        secure = ["--target", target, "--tls-ca", str(pki.ca_file), "--token", "t0k"]
        predict = ["predict", "--predictor", "p", "--feature", "amount=0.5"]
        assert await asyncio.to_thread(main, [*predict, *secure]) == 0
        answer = json.loads(capsys.readouterr().out)
        scored = [
            "score",
            str(source),
            str(tmp_path / "out.csv"),
            "--predictor",
            "p",
            "--quiet",
            "--id-columns",
            "order_id",
        ]
        assert await asyncio.to_thread(main, [*scored, *secure]) == 0
        no_token = await asyncio.to_thread(main, [*scored, *secure[:4]])
        no_token_err = capsys.readouterr().err
        async with AsyncClient(target, tls=Tls(ca_file=pki.ca_file), token="t0k", timeout_s=5) as client:
            expected = await client.predict("p", {"amount": amounts})
    assert answer["results"][0]["scores"] == pytest.approx([float(expected.scores[0, 0])], rel=1e-6)
    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["order_id"] for r in rows] == ["o0", "o1", "o2"]
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected.scores[:, 0], rtol=1e-6)
    assert no_token == 1 and "UNAUTHENTICATED" in no_token_err and "bearer token" in no_token_err


def test_half_given_client_certificate_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", "--target", "127.0.0.1:1", "--tls-ca", "ca.pem", "--tls-cert", "c.pem"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "sibyl: error: give --tls-cert and --tls-key together (client certificate for mutual TLS)"
    )
