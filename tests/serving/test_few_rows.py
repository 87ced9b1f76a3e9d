"""serving.few_rows and the service's prediction ids: the same arrays and ids as numpy's one-call forms and
os.urandom, and the event loop's thread keeps the GIL through them (docs/performance.md#gil-releases)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from sibyl.api.outcomes import PREDICTION_ID
from sibyl.serving import service
from sibyl.serving.few_rows import FEW_ROWS, distinct, put_columns, put_rows, take_columns, take_rows
from sibyl.serving.service import ID_POOL, new_prediction_id

ROWS = [0, 1, 2, FEW_ROWS, FEW_ROWS + 1, 100]
NUMPY = tuple(int(part) for part in np.__version__.split(".")[:2])


@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("kind", ["list", "tuple", "array"])
def test_take_columns_equals_np_take(n: int, kind: str) -> None:
    rng = np.random.default_rng(n)
    m = rng.random((n, 7)).astype(np.float32)
    columns = [6, 0, 3, 3, 1]
    given = {"list": columns, "tuple": tuple(columns), "array": np.array(columns, np.intp)}[kind]
    got = take_columns(m, given)
    np.testing.assert_array_equal(got, np.take(m, columns, axis=1))
    assert got.dtype == np.float32 and got.shape == (n, 5) and got.flags["C_CONTIGUOUS"]
    assert not np.shares_memory(got, m)
    flags = m < 0.5  # bool matrices (the plan's missing cells) too
    np.testing.assert_array_equal(take_columns(flags, given), np.take(flags, columns, axis=1))


@pytest.mark.parametrize("n", ROWS)
def test_put_columns_equals_a_2d_assignment(n: int) -> None:
    m = np.arange(n * 6, dtype=np.float32).reshape(n, 6)
    expected = m.copy()
    columns = np.array([4, 1], np.intp)
    values = -np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    expected[:, columns] = values
    put_columns(m, columns, values)
    np.testing.assert_array_equal(m, expected)


@pytest.mark.parametrize("k", [0, 1, 3, FEW_ROWS, FEW_ROWS + 1, 40])
def test_take_rows_put_rows_and_distinct_equal_numpys(k: int) -> None:
    rng = np.random.default_rng(k)
    m = rng.random((50, 3)).astype(np.float32)
    rows = rng.integers(0, 50, k).astype(np.intp)
    np.testing.assert_array_equal(take_rows(m, rows), m[rows])
    assert take_rows(m, rows).shape == (k, 3)
    unique_rows = np.unique(rows)
    values = rng.random((len(unique_rows), 3)).astype(np.float32)
    expected = m.copy()
    expected[unique_rows] = values
    put_rows(m, unique_rows, values)
    np.testing.assert_array_equal(m, expected)
    got = distinct(rows, 50)
    np.testing.assert_array_equal(got, np.unique(rows))
    assert got.dtype == np.intp


@contextlib.contextmanager
def gil_probe() -> Iterator[Callable[[Callable[[], object]], int]]:
    """steals(fn): how many of 2,000 calls of fn let another thread take the GIL. That thread counts only while it
    holds the GIL, and with a 0.2 s switch interval it is never made to take it during these short loops: it gets
    it only when the calling thread gives it up. Stopped before any assertion (a failure's report would crawl)."""
    count = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    thread = threading.Thread(target=spin, daemon=True)
    thread.start()

    def steals(fn: Callable[[], object], calls: int = 2000) -> int:
        time.sleep(0.25)  # the spinner runs; this thread takes the GIL back at the interval
        taken = 0
        for _ in range(calls):
            before = count[0]
            fn()
            if count[0] != before:
                taken += 1
                time.sleep(0.25)
                if taken == 3:  # a function that gives it up does so within a few calls: enough
                    break
        return taken

    try:
        yield steals
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        thread.join()


def test_the_few_rows_forms_keep_the_gil() -> None:
    one, few = np.ones((1, 12), np.float32), np.ones((FEW_ROWS, 12), np.float32)
    columns, rows, codes = np.array([3, 0, 7, 7], np.intp), np.array([5, 1], np.intp), np.array([2, 0, 2], np.intp)
    values = np.zeros((FEW_ROWS, 4), np.float32)
    calls: dict[str, Callable[[], object]] = {
        # The probe: a call known to give the GIL up (a system call CPython makes without it) must be caught.
        "os.urandom (the probe)": lambda: os.urandom(16),
        "take_columns, 1 row": lambda: take_columns(one, columns),
        "take_columns, a few rows": lambda: take_columns(few, columns),
        "take_columns, a tuple": lambda: take_columns(one, (3, 0)),
        "put_columns": lambda: put_columns(few, columns, values),
        "take_rows": lambda: take_rows(few, rows),
        "put_rows": lambda: put_rows(few, rows, few[:2]),
        "distinct": lambda: distinct(codes, 3),
    }
    if NUMPY < (2, 0):  # numpy 1.x gives the GIL up in every copy loop (np.stack, a whole-row assignment)
        for name in ("take_columns, a few rows", "take_rows", "put_rows"):
            del calls[name]
    with gil_probe() as steals:
        # The probe first, given many calls: on a busy box the spinner is not always on a core when the GIL is free.
        probe = steals(calls.pop("os.urandom (the probe)"), 50_000)
        gave_up = {name: steals(fn) for name, fn in calls.items()}
        service._ids.clear()  # then one refill: the pool's other ids are drawn without a system call
        new_prediction_id()
        gave_up["prediction id"] = steals(new_prediction_id, ID_POOL // 2)
    assert probe > 0
    assert [name for name, taken in gave_up.items() if taken] == []


def test_prediction_ids_are_fresh_hex_and_a_forked_child_never_reuses_its_parents() -> None:
    ids = [new_prediction_id() for _ in range(3 * ID_POOL)]  # three refills
    assert len(set(ids)) == len(ids)
    assert all(PREDICTION_ID.fullmatch(i) and re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    new_prediction_id()  # the pool holds ids a forked child must not hand out again
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, then out without running the parent's cleanup
        os.write(write, new_prediction_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    assert PREDICTION_ID.fullmatch(child)
    assert child != new_prediction_id()  # without the at-fork clear, the child took the parent's next id
