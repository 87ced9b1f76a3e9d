"""The HTTP field: sibyl's V2 REST and five peers over HTTP, every one fed the same rows (the sample's, manifest
column order) in its own request body, its scores checked equal to onnxruntime's before it is measured.

- V2 REST (Open Inference Protocol JSON, as tritonclient.http sends it): sibyl, MLServer, KServe. One FP32
  [rows, 16] tensor named as the model's input, `data` flat in row-major order.
- The frameworks' own JSON APIs: BentoML, LitServe, Ray Serve. {"rows": [[16 floats], ...]} -> {"scores": [...]}.

Each entry names its `--only` group, its report row, its venv (benchmarks.peers.setup; None: sibyl itself), the URL
path, how to build its body and how to read scores back from its answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.load import workload as w
from benchmarks.peers.entries import MODEL_NAME, SCORE_TOLERANCE, expected_scores, single_row_input
from benchmarks.peers.v2 import PeerError
from benchmarks.scenarios.definitions import PREDICTOR

JSON = "application/json"


def v2_body(rows: int) -> bytes:
    """V2 REST infer request: the rows as one FP32 [rows, columns] tensor, JSON `data` (tritonclient.http's form)."""
    input_name, matrix = single_row_input(rows)
    tensor = {"name": input_name, "shape": list(matrix.shape), "datatype": "FP32", "data": matrix.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def rows_body(rows: int) -> bytes:
    """The frameworks' own JSON: {"rows": [[...], ...]}, the same float32 values as the V2 tensor's."""
    _, matrix = single_row_input(rows)
    return json.dumps({"rows": matrix.tolist()}).encode()


def v2_scores(output: str, column: int | None) -> Callable[[bytes], np.ndarray]:
    """Reads a V2 REST infer response: the named output's `column` (None: its only column) as one score per row."""

    def read(raw: bytes) -> np.ndarray:
        try:
            outputs = {o["name"]: o for o in json.loads(raw)["outputs"]}
            out = outputs[output]
            values = np.asarray(out["data"], dtype=np.float64).reshape([int(d) for d in out["shape"]])
        except (ValueError, KeyError, TypeError) as exc:
            raise PeerError(f"not a V2 answer with output {output!r}: {raw[:200]!r} ({exc})") from None
        if values.ndim == 2 and column is not None:
            return values[:, column]
        return values.reshape(-1)

    return read


def listed_scores(raw: bytes) -> np.ndarray:
    """Reads {"scores": [...]}."""
    try:
        return np.asarray(json.loads(raw)["scores"], dtype=np.float64).reshape(-1)
    except (ValueError, KeyError, TypeError) as exc:
        raise PeerError(f"not a {{'scores': [...]}} answer: {raw[:200]!r} ({exc})") from None


@dataclass(frozen=True)
class HttpEntry:
    name: str  # --only / --skip group
    row: str  # its row in the report
    venv: str | None  # benchmarks.peers.setup key; None: sibyl from this checkout
    description: str
    path: str  # URL path of the POST
    body: Callable[[int], bytes]  # rows -> request body
    scores: Callable[[bytes], np.ndarray]  # answer -> one score per row


def _positive_class() -> tuple[str, int | None]:
    m = w.manifest(w.PRIMARY)
    return m.output.name, m.output.column


def http_entries() -> dict[str, HttpEntry]:
    output, column = _positive_class()
    v2_peer = v2_scores(output, column)
    infer = f"/v2/models/{MODEL_NAME}/infer"
    return {
        "http-sibyl": HttpEntry(
            "http-sibyl", "sibyl-rest", None,
            "sibyl serve, default settings (file log on, with feature values), KServe V2 REST infer, JSON tensor",
            f"/v2/models/{PREDICTOR}/infer", v2_body, v2_scores("score", None),
        ),
        "http-mlserver": HttpEntry(
            "http-mlserver", "mlserver-rest", "mlserver",
            "MLServer 1.7.1 REST (the gRPC peer's server and runtime, its HTTP port), V2 infer, JSON tensor",
            infer, v2_body, v2_peer,
        ),
        "http-kserve": HttpEntry(
            "http-kserve", "kserve-rest", "kserve",
            "KServe 0.21.0 Python ModelServer (defaults, one worker), a kserve.Model calling onnxruntime, V2 REST",
            infer, v2_body, v2_peer,
        ),
        "http-bentoml": HttpEntry(
            "http-bentoml", "bentoml-http", "bentoml",
            "BentoML 1.4.40 service (defaults, one worker), a sync @bentoml.api calling onnxruntime, its JSON API",
            "/predict", rows_body, listed_scores,
        ),
        "http-litserve": HttpEntry(
            "http-litserve", "litserve-http", "litserve",
            "LitServe 0.2.19 LitServer (defaults: one CPU inference worker), a LitAPI calling onnxruntime, JSON",
            "/predict", rows_body, listed_scores,
        ),
        "http-rayserve": HttpEntry(
            "http-rayserve", "rayserve-http", "rayserve",
            "Ray Serve 2.60.0 (local Ray, num_cpus=2, no dashboard), one replica calling onnxruntime, JSON",
            "/predict", rows_body, listed_scores,
        ),
    }  # fmt: skip


HTTP_NAMES = tuple(http_entries())


def check_scores(entry: HttpEntry, raw: bytes, rows: int) -> str | None:
    """None when the answer's scores equal onnxruntime's on the same rows, else what differs."""
    try:
        got = entry.scores(raw)
    except PeerError as exc:
        return str(exc)
    want = expected_scores(rows)
    if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=SCORE_TOLERANCE):
        return f"scores {got.tolist()[:4]} differ from onnxruntime's {want.tolist()[:4]}"
    return None
