"""Gathers and scatters of a call's matrices (columns, rows, distinct ids) that keep the GIL for a few rows.

np.take and 2-D integer indexing give the GIL up around their copy however small it is; when another thread is
waiting for it (a shadow, the log writer, the verdict flusher), that thread takes it about one time in thirty, and
the event loop then waits for it to come back, up to the switch interval (server.gil_switch_ms), in the middle of
a 1-row call. 1-D integer indexing keeps the GIL for small arrays, so a call of up to FEW_ROWS rows is gathered
and scattered row by row, which costs a few microseconds more than one np.take; above that the row loop would
cost more than the rare wait (docs/performance.md#gil-releases). numpy 1.x gives the GIL up in its copy loops too
(np.stack, a whole-row assignment), so there only the 1-row forms keep it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEW_ROWS = 8


def take_columns(m: np.ndarray, columns: np.ndarray | Sequence[int]) -> np.ndarray:
    """m[:, columns] as a fresh C-order array."""
    n = m.shape[0]
    if n > FEW_ROWS or n == 0:
        return np.take(m, columns, axis=1)
    index = np.asarray(columns, np.intp)  # once, not per row (and a tuple is not read as a multi-axis index)
    if n == 1:
        one: np.ndarray = m[0][index]
        return one[None]
    return np.stack([row[index] for row in m])


def put_columns(m: np.ndarray, columns: np.ndarray, values: np.ndarray) -> None:
    """m[:, columns] = values (values: [rows, len(columns)])."""
    if m.shape[0] <= FEW_ROWS:
        for row, new in zip(m, values, strict=True):
            row[columns] = new
    else:
        m[:, columns] = values


def take_rows(m: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """m[rows] as a fresh array."""
    if 0 < len(rows) <= FEW_ROWS:
        return np.stack([m[i] for i in rows.tolist()])
    gathered: np.ndarray = m[rows]
    return gathered


def put_rows(m: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """m[rows] = values."""
    if len(rows) <= FEW_ROWS:
        for i, new in zip(rows.tolist(), values, strict=True):
            m[i] = new
    else:
        m[rows] = values


def distinct(codes: np.ndarray, size: int) -> np.ndarray:
    """The distinct values among codes (each in range(size)), ascending."""
    if len(codes) <= FEW_ROWS:
        return np.array(sorted(set(codes.tolist())), np.intp)
    counts: np.ndarray = np.bincount(codes, minlength=size)
    return np.flatnonzero(counts)
