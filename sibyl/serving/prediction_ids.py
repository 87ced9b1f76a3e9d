"""Prediction ids: 128 random bits from os.urandom as 32 lowercase hex characters, like a uuid4's entropy.

os.urandom gives the GIL up around its system call, so one call per prediction was one more moment, in the middle
of every call, at which a waiting thread could take the GIL from the event loop (serving.few_rows says what that
costs). The ids are drawn POOL at a time instead: one system call per POOL predictions. A forked child starts
with an empty pool, so it never hands out the ids its parent still holds.
"""

from __future__ import annotations

import os

POOL = 1024
_pool: list[str] = []


def new_id() -> str:
    """A fresh prediction id (api.outcomes.PREDICTION_ID matches it)."""
    while True:
        try:
            return _pool.pop()
        except IndexError:  # empty (list.pop and extend are atomic: two threads refilling at once is harmless)
            raw = os.urandom(16 * POOL).hex()
            _pool.extend(raw[i : i + 32] for i in range(0, len(raw), 32))


os.register_at_fork(after_in_child=_pool.clear)
