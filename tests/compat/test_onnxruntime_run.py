"""compat.onnxruntime_run on the installed onnxruntime: a session has the C++ run sibyl calls (`_sess.run`) and
it scores as InferenceSession.run does; a session without it runs through InferenceSession.run."""

from __future__ import annotations

from typing import cast

import numpy as np
import onnxruntime as ort

from sibyl.compat.onnxruntime_run import fast_path_taken, run_function
from sibyl.models.runtime import session_options
from tests.support.onnxgen import expected_scores, logistic_onnx

WEIGHTS = [0.5, -1.0, 2.0]
BIAS = 0.25
MATRIX = np.random.default_rng(3).normal(size=(7, len(WEIGHTS))).astype(np.float32)


def session() -> ort.InferenceSession:
    model = logistic_onnx(WEIGHTS, BIAS)
    return ort.InferenceSession(model, sess_options=session_options(1), providers=["CPUExecutionProvider"])


class PublicRunOnly:
    """An InferenceSession as an onnxruntime without `_sess` would be: only its public run."""

    def __init__(self, inner: ort.InferenceSession) -> None:
        self.run = inner.run


def test_the_installed_onnxruntime_takes_the_cpp_run() -> None:
    s = session()
    assert fast_path_taken(s), f"onnxruntime {ort.__version__}: InferenceSession has no _sess.run any more"
    assert run_function(s) == s._sess.run  # the C++ run itself, not InferenceSession.run
    scores = run_function(s)(["probabilities"], {"input": MATRIX}, None)[0]
    np.testing.assert_array_equal(scores, s.run(["probabilities"], {"input": MATRIX})[0])
    np.testing.assert_allclose(scores[:, 1], expected_scores(WEIGHTS, BIAS, MATRIX), rtol=1e-5)


def test_without_the_cpp_run_inference_session_run_scores_the_same() -> None:
    s = session()
    public = cast(ort.InferenceSession, PublicRunOnly(s))
    assert not fast_path_taken(public)
    assert run_function(public) == s.run
    scores = run_function(public)(["probabilities"], {"input": MATRIX}, None)[0]
    np.testing.assert_array_equal(scores, run_function(s)(["probabilities"], {"input": MATRIX}, None)[0])
