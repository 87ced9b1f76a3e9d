"""The whole peer field is wired: every HTTP entry and the KServe gRPC peer have a name --only knows, a venv the
setup makes, a server that listens on loopback only, and a body its server reads (the same rows as the gRPC
comparison); answers are read back into scores and checked against onnxruntime's. The HTTP field end to end runs
against a real sibyl serve under wrk (about 10 s); the peers' venvs are not built here."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import add_arguments, plan_from
from benchmarks.load import workload as w
from benchmarks.load import wrk
from benchmarks.load.client import ClientPool
from benchmarks.load.measure import Runner
from benchmarks.peers import entries as grpc_peers
from benchmarks.peers import http_field
from benchmarks.peers import setup as peers_setup
from benchmarks.peers.http_entries import (
    HTTP_NAMES,
    check_scores,
    http_entries,
    listed_scores,
    rows_body,
    v2_body,
    v2_scores,
)
from benchmarks.peers.http_servers import APPS, BentoMLPeer, KServePeer, LitServePeer, RayServePeer
from benchmarks.peers.v2 import PeerError
from benchmarks.report import document, plots, targets
from benchmarks.report.results import entry_json
from benchmarks.suite import ALL_NAMES, PEERS, Plan
from tests.support.needs import in_ci
from tests.support.process import LOOPBACK


def test_every_entry_has_a_name_a_row_and_a_venv_the_setup_makes() -> None:
    entries = http_entries()
    assert set(HTTP_NAMES) == set(entries) and set(HTTP_NAMES) <= set(ALL_NAMES) and set(HTTP_NAMES) <= set(PEERS)
    rows = [e.row for e in entries.values()]
    assert len(set(rows)) == len(rows)
    venvs = {e.venv for e in entries.values()} - {None}
    assert venvs == {"mlserver", "kserve", "bentoml", "litserve", "rayserve"}
    assert venvs <= set(peers_setup.requirements()) and venvs <= set(http_field.SERVERS)
    assert entries["http-sibyl"].venv is None  # sibyl from this checkout, started like the other sibyl entries
    kserve = grpc_peers.PEERS["peer-kserve"]
    assert (kserve.venv, kserve.row, kserve.perf_analyzer) == ("kserve", "kserve-v2", False)
    assert "peer-kserve" in ALL_NAMES and "peer-kserve" in PEERS


def test_only_and_skip_know_the_new_entries(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--only", "http-sibyl,http-bentoml,peer-kserve", "--skip", "http-bentoml"])
    assert plan_from(args).only == ("http-sibyl", "peer-kserve")


def test_v2_body_is_the_comparison_rows_as_one_fp32_tensor() -> None:
    m = w.manifest(w.PRIMARY)
    for rows in (1, 100):
        doc = json.loads(v2_body(rows))
        (tensor,) = doc["inputs"]
        assert (tensor["name"], tensor["shape"], tensor["datatype"]) == (m.input_name, [rows, 16], "FP32")
        want = w.sample_matrix(m.columns, rows)
        np.testing.assert_array_equal(np.asarray(tensor["data"], dtype=np.float32).reshape(rows, 16), want)


def test_rows_body_carries_the_same_values() -> None:
    m = w.manifest(w.PRIMARY)
    for rows in (1, 100):
        got = np.asarray(json.loads(rows_body(rows))["rows"], dtype=np.float32)
        np.testing.assert_array_equal(got, w.sample_matrix(m.columns, rows))


def v2_answer(name: str, matrix: np.ndarray) -> bytes:
    out = {"name": name, "datatype": "FP32", "shape": list(matrix.shape), "data": matrix.ravel().tolist()}
    return json.dumps({"model_name": "gbdt", "outputs": [out]}).encode()


def test_answers_are_read_back_into_scores_and_checked() -> None:
    want = grpc_peers.expected_scores(100)
    entries = http_entries()
    proba = np.stack([1 - want, want], axis=1).astype(np.float32)
    assert check_scores(entries["http-kserve"], v2_answer("probabilities", proba), 100) is None
    assert check_scores(entries["http-sibyl"], v2_answer("score", want.reshape(-1, 1)), 100) is None
    assert check_scores(entries["http-bentoml"], json.dumps({"scores": want.tolist()}).encode(), 100) is None
    wrong = check_scores(entries["http-litserve"], json.dumps({"scores": (want + 0.01).tolist()}).encode(), 100)
    assert wrong is not None and "differ" in wrong
    assert "not a V2 answer" in (check_scores(entries["http-mlserver"], b'{"error": "x"}', 1) or "")
    with pytest.raises(PeerError):
        listed_scores(b"[]")
    np.testing.assert_array_equal(
        v2_scores("probabilities", None)(v2_answer("probabilities", proba[:, :1])), proba[:, 0]
    )


def test_peer_servers_listen_on_loopback_ports_from_their_venvs(tmp_path: Path) -> None:
    python, model = tmp_path / "bin" / "python", w.model_path(w.PRIMARY)
    for cls in (BentoMLPeer, LitServePeer, RayServePeer):
        server = cls(python, model)
        try:
            cmd = server._command()
            assert f"SIBYL_PEER_MODEL={model.resolve()}" in cmd and f"PYTHONPATH={APPS}" in cmd
            assert str(server.http_port) in cmd and cmd[cmd.index(str(server.http_port)) - 1] == "--port"
            assert str(tmp_path / "bin") in " ".join(cmd)
        finally:
            server.close()
    bento = BentoMLPeer(python, model)
    try:
        cmd = bento._command()
        assert cmd[cmd.index("--host") + 1] == LOOPBACK
    finally:
        bento.close()
    kserve = KServePeer(python, model, "gbdt")
    try:
        cmd = kserve._command()
        assert cmd[cmd.index("--grpc-port") + 1] == str(kserve.port)
        assert cmd[cmd.index("--http-port") + 1] == str(kserve.http_port) and kserve.http_port != kserve.port
    finally:
        kserve.close()
    assert "127.0.0.1" in (APPS / "kserve_app.py").read_text()  # KServe binds 0.0.0.0 and [::] unless rewritten
    assert '"host": "127.0.0.1"' in (APPS / "rayserve_app.py").read_text()
    assert 'host="127.0.0.1"' in (APPS / "litserve_app.py").read_text()


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    plan = Plan.quick_plan(tmp_path, concurrency=(1, 8), compare_rows=(1,), warmup_s=0.0, repeats=1)
    with ClientPool(1) as pool:
        yield Runner(plan, pool)


def test_a_missing_venv_skips_the_entry_with_the_command_to_create_it(
    tmp_path: Path, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers_setup, "VENV_ROOT", tmp_path / "venvs")
    peers = [e for e in http_entries().values() if e.venv is not None]
    lanes: list[http_field.HttpLane] = []
    with contextlib.ExitStack() as stack:
        for e in peers:
            http_field.start_http(stack, runner.plan, runner, e, tmp_path, lanes)
    assert lanes == [] and [x.name for x in runner.entries] == [e.row for e in peers]
    for x in runner.entries:
        assert x.skipped and f"python -m benchmarks.peers.setup {x.name.split('-')[0]}" in x.skipped
        assert (x.section, x.api, x.client) == ("http", "http", "wrk")


def test_without_wrk_every_entry_says_how_to_get_it(
    tmp_path: Path, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wrk, "binary", lambda: None)
    http_field.run_http_field(runner.plan, runner, HTTP_NAMES, tmp_path)
    assert len(runner.entries) == len(HTTP_NAMES)
    assert all(e.skipped == http_field.WRK_MISSING for e in runner.entries)


def test_the_field_end_to_end_against_sibyl_rest(tmp_path: Path, runner: Runner) -> None:
    """sibyl's V2 REST under wrk at c=1 and c=8, then its table row, its CDF plot and the HTTP target."""
    if wrk.binary() is None:
        if in_ci():
            pytest.fail("wrk not found: apt-get install wrk (scripts/test.sh does)", pytrace=False)
        pytest.skip("wrk not found: apt-get install wrk")
    store = w.make_store(tmp_path / "store")
    http_field.run_http_field(runner.plan, runner, ("http-sibyl",), store)
    (entry,) = runner.entries
    assert entry.skipped is None and set(entry.http) == {1, 8}
    for c, (run,) in entry.http.items():
        assert run.error is None and run.requests > 0 and run.error_count == 0, (c, run)
        assert run.server_cpu_us_per_call is not None and run.server_cpu_us_per_call > 0
    doc = entry_json(entry)
    assert doc["params"]["idle_cores"] >= 0 and len(doc["http"]["1"]["cdf"]) == wrk.CDF_POINTS
    table = "\n".join(document.http_table([doc]))
    assert "## HTTP, one client for all (wrk)" in table and "| sibyl-rest | 1 | 8 |" in table
    png = plots.protocol_cdf([doc], "http", [1], tmp_path / "cdf_http.png")
    assert png.stat().st_size > 0
    found = {t["name"]: t for t in targets.evaluate([doc])}
    assert found["http-p99-c1"]["status"] == "n/a"  # no HTTP peer in this run: nothing to compare against
