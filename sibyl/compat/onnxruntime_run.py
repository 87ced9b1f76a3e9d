"""onnxruntime's C++ run of a session, without InferenceSession.run's Python checks; else InferenceSession.run.

InferenceSession.run re-checks, in Python, what sibyl's own input already guarantees (one float32 numpy input under
its name, no OrtValues, no graph capture): a large share of a 1-row call's CPU
(docs/performance.md#inference-call). The C++ call checks names and types itself, and onnxruntime's own wrapper
calls the same `_sess.run`. `_sess` is not public API: `fast_path_taken(session)` says whether a session has it,
and tests/compat/test_onnxruntime_run.py fails when the installed onnxruntime does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

# (output names, {input name: array}, run options or None) -> one array per output
Run = Callable[[list[str], Mapping[str, np.ndarray], "ort.RunOptions | None"], list[Any]]


def fast_path_taken(session: ort.InferenceSession) -> bool:
    """run_function(session) is the session's C++ run."""
    return callable(getattr(getattr(session, "_sess", None), "run", None))


def run_function(session: ort.InferenceSession) -> Run:
    """The function to run this session with: its C++ run when it has one, else InferenceSession.run. Called on
    every inference: one getattr."""
    native = getattr(session, "_sess", None)
    run: Run = native.run if native is not None else session.run
    return run
