"""The benchmark peers score the same model on the same input as sibyl's single-row comparison row.

Always (fast, no peer venvs): the peers' V2 request building, readiness polling and score decoding run against
sibyl's own KServe V2 endpoint (same protocol), and answer what sibyl's Predict answers for the single-row
request; a missing peer venv is a skip with the command that creates it.
With SIBYL_BENCH_PEERS=1: the peer venvs are created or reused (.bench-venvs/), each real peer (MLServer,
Triton) is started, its scores must equal sibyl's, and a few seconds of open-loop load get no error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from benchmarks.load import workload as w
from benchmarks.load.client import ClientPool, Job, run_job
from benchmarks.load.measure import Runner
from benchmarks.peers import compare
from benchmarks.peers import entries as peers
from benchmarks.peers import setup as peers_setup
from benchmarks.peers.v2 import (
    MODEL_INFER,
    PeerError,
    infer_once,
    infer_request,
    output_array,
    scores,
    wait_model_ready,
)
from benchmarks.scenarios.definitions import PREDICT
from benchmarks.scenarios.servers import sibyl_server
from benchmarks.suite import Plan
from sibyl.kserve.grpc_predict_v2_pb2 import ModelInferResponse
from sibyl.v1 import predict_pb2

REAL_PEERS = os.environ.get("SIBYL_BENCH_PEERS") == "1"
PREDICTOR = "bench"  # the benchmark store's predictor serving gbdt@1 (a V2 model is a sibyl predictor)


@pytest.fixture(scope="module")
def sibyl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = w.make_store(tmp_path_factory.mktemp("store"))
    with sibyl_server("plain", store) as server:
        yield server.target


@pytest.fixture(scope="module")
def sibyl_single_row(sibyl: str) -> np.ndarray:
    """sibyl's own answer to the single-row native Predict request of the comparison."""
    with grpc.insecure_channel(sibyl) as channel:
        raw = channel.unary_unary(PREDICT)(w.request_features(PREDICTOR, w.PRIMARY, 1), timeout=10)
    resp = predict_pb2.PredictResponse.FromString(raw)
    return np.asarray(resp.results[0].scores, dtype=np.float64)


def test_peer_request_scored_by_sibyl_v2_equals_its_predict_answer(sibyl: str, sibyl_single_row: np.ndarray) -> None:
    wait_model_ready(sibyl, PREDICTOR, timeout_s=10)
    raw = infer_once(sibyl, peers.peer_payload(model=PREDICTOR))
    got = scores(raw, "score", None)
    assert got.shape == (1,)
    np.testing.assert_allclose(got, sibyl_single_row, rtol=0, atol=1e-6)
    np.testing.assert_allclose(peers.expected_scores(), sibyl_single_row, rtol=0, atol=1e-6)


def test_peer_input_is_the_single_row_scenarios_row() -> None:
    request = predict_pb2.PredictRequest.FromString(w.request_features(PREDICTOR, w.PRIMARY, 1))
    row = request.rows[0]
    flat = []
    for spec in w.manifest(w.PRIMARY).inputs:
        flat += [row.features[spec.name]] if spec.dtype == "float" else list(row.vectors[spec.name].values)
    name, matrix = peers.single_row_input()
    assert name == "input" and matrix.shape == (1, 16)
    np.testing.assert_array_equal(matrix[0], np.asarray(flat, dtype=np.float32))


def test_open_loop_client_drives_v2_without_errors(sibyl: str) -> None:
    job = Job(sibyl, MODEL_INFER, peers.peer_payload(model=PREDICTOR), rate=50, duration_s=0.6, warmup_s=0.1)
    result = run_job(job)
    assert result.ok == result.sent > 0 and not result.errors


def test_scores_read_typed_contents_and_reject_bad_shapes() -> None:
    resp = ModelInferResponse(model_name="gbdt")
    out = resp.outputs.add(name="probabilities", datatype="FP32")
    out.shape.extend([2, 2])
    out.contents.fp32_contents.extend([0.25, 0.75, 0.5, 0.5])
    raw = resp.SerializeToString()
    np.testing.assert_allclose(scores(raw, "probabilities", 1), [0.75, 0.5])
    assert output_array(raw, "probabilities").shape == (2, 2)
    with pytest.raises(PeerError, match="no output 'score'"):
        scores(raw, "score", None)
    with pytest.raises(PeerError, match="no column 2"):
        scores(raw, "probabilities", 2)
    out.shape[:] = [3, 2]
    with pytest.raises(PeerError, match="4 values for shape"):
        output_array(resp.SerializeToString(), "probabilities")


def test_unknown_model_is_never_ready(sibyl: str) -> None:
    with pytest.raises(PeerError, match="'no-such-model' not ready"):
        wait_model_ready(sibyl, "no-such-model", timeout_s=0.5)


def test_request_must_be_a_matrix() -> None:
    with pytest.raises(ValueError, match="rows x columns"):
        infer_request("gbdt", "input", np.zeros(16, dtype=np.float32))


def test_missing_venv_skips_the_peer_with_the_command_to_create_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers_setup, "VENV_ROOT", tmp_path / "venvs")
    with ClientPool(1) as pool, contextlib.ExitStack() as stack:
        runner = Runner(Plan(out=tmp_path), pool)
        started = compare.Started()
        for peer in peers.PEERS.values():
            compare.start_peer(stack, runner.plan, runner, peer, started)
    assert started.lanes == [] and started.perf == []
    assert [(e.name, e.rows) for e in runner.entries] == [(p.row, n) for p in peers.PEERS.values() for n in (1, 100)]
    for entry in runner.entries:
        assert entry.skipped and "python -m benchmarks.peers.setup" in entry.skipped
    with pytest.raises(ValueError, match="unknown peer"):
        peers_setup.venv_python("nope")


if REAL_PEERS:  # defined only on request: the default run checks the same code paths against sibyl instead

    @pytest.mark.timeout(1200)
    @pytest.mark.parametrize("name", list(peers.PEERS))
    def test_real_peer_scores_equal_sibyl_and_takes_load(name: str, sibyl_single_row: np.ndarray) -> None:
        peer = peers.PEERS[name]
        python = peers_setup.ensure(peer.venv)
        with peer.server(python, w.model_path(w.PRIMARY)) as server:
            np.testing.assert_allclose(peers.peer_scores(server.target), sibyl_single_row, rtol=0, atol=1e-6)
            assert peers.check_peer(server.target, rows=100) is None
            job = Job(server.target, MODEL_INFER, peers.peer_payload(), rate=20, duration_s=3.0, warmup_s=0.5)
            result = run_job(job)
            assert result.ok == result.sent >= 50 and not result.errors
