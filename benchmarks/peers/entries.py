"""The gRPC peers: MLServer, Triton and KServe's Python ModelServer serving the same model.onnx (gbdt@1) over KServe V2 gRPC, fed the same
feature values as sibyl (the sample's rows as one FP32 [N, 16] tensor, in manifest column order).

Each peer runs from its own venv (benchmarks.peers.setup); a missing venv skips the peer with the command
that creates it. Before measuring, a peer's scores must equal onnxruntime's on the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.load import workload as w
from benchmarks.peers import setup as peers_setup
from benchmarks.peers.http_servers import KServePeer
from benchmarks.peers.servers import MLServerPeer, PeerServer, TritonPeer
from benchmarks.peers.v2 import PeerError, infer_once, infer_request, scores

MODEL_NAME = "gbdt"
SCORE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Peer:
    name: str  # entry name in the results
    venv: str  # benchmarks.peers.setup key
    description: str
    server: Callable[[Path, Path], PeerServer]  # (venv python, model.onnx) -> not yet started server
    row: str  # its row in the comparison
    perf_analyzer: bool  # answers Triton's ModelConfig, so perf_analyzer can drive it


PEERS: dict[str, Peer] = {
    "peer-mlserver": Peer(
        "peer-mlserver",
        "mlserver",
        "MLServer 1.7.1, custom runtime = onnxruntime on gbdt@1's model.onnx (parallel_workers 0), "
        "KServe V2 gRPC, the rows as one FP32 [N, 16] tensor",
        lambda python, model: MLServerPeer(python, model, MODEL_NAME),
        "mlserver-v2",
        False,
    ),
    "peer-triton": Peer(
        "peer-triton",
        "triton",
        "tritonserver 2.51 (nvidia-pytriton 0.7.0), PyTriton Python model = onnxruntime on gbdt@1's "
        "model.onnx (the bundled server has no onnxruntime backend), dynamic batching, KServe V2 gRPC, "
        "the same tensor",
        lambda python, model: TritonPeer(python, model, MODEL_NAME),
        "triton-v2",
        True,
    ),
    "peer-kserve": Peer(
        "peer-kserve",
        "kserve",
        "KServe 0.21.0 Python ModelServer (defaults, one worker), a kserve.Model = onnxruntime on gbdt@1's "
        "model.onnx, KServe V2 gRPC, the same tensor",
        lambda python, model: KServePeer(python, model, MODEL_NAME),
        "kserve-v2",
        False,  # no ModelConfig RPC (Triton's extension): perf_analyzer cannot drive it
    ),
}


def single_row_input(rows: int = 1) -> tuple[str, np.ndarray]:
    """The ONNX input name and the rows x columns matrix every entry sends (the sample's rows, manifest order)."""
    m = w.manifest(w.PRIMARY)
    return m.input_name, w.sample_matrix(m.columns, rows)


def peer_payload(rows: int = 1, model: str = MODEL_NAME) -> bytes:
    input_name, matrix = single_row_input(rows)
    return infer_request(model, input_name, matrix)


def expected_scores(rows: int = 1) -> np.ndarray:
    """What sibyl scores for the same rows: onnxruntime on the same file, the manifest's output column."""
    import onnxruntime as ort

    m = w.manifest(w.PRIMARY)
    input_name, matrix = single_row_input(rows)
    session = ort.InferenceSession(str(w.model_path(w.PRIMARY)), providers=["CPUExecutionProvider"])
    (out,) = session.run([m.output.name], {input_name: matrix})
    return np.asarray(out, dtype=np.float64)[:, m.output.column]


def peer_scores(target: str, rows: int = 1) -> np.ndarray:
    m = w.manifest(w.PRIMARY)
    return scores(infer_once(target, peer_payload(rows)), m.output.name, m.output.column)


def check_peer(target: str, rows: int = 1) -> str | None:
    """None when the peer's scores equal onnxruntime's for the same input, else what differs."""
    try:
        got, want = peer_scores(target, rows), expected_scores(rows)
    except PeerError as exc:
        return str(exc)
    if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=SCORE_TOLERANCE):
        return f"scores {got.tolist()} differ from onnxruntime's {want.tolist()}"
    return None


def missing_venv_reason(peer: Peer) -> str:
    where = peers_setup.venv_dir(peer.venv)
    return (
        f"its venv {where} is missing or outdated: create it with `python -m benchmarks.peers.setup {peer.venv}` "
        "or run the suite with --with-peers"
    )
