"""The V2 walk over HTTP stays short (issue 32's target): one JSON infer call through sibyl's own files, counted
as a reader following the code would (benchmarks.scenarios.rest_walk's reader walk)."""

from __future__ import annotations

import asyncio

from benchmarks.scenarios.rest_walk import summary, walk

MAX_FILES, MAX_RETURNS = 12, 6


def test_a_rest_infer_call_opens_few_files_and_rarely_comes_back() -> None:
    tracer = asyncio.run(walk(rows=1, warmup=5))
    files, returns = summary(tracer.reader)
    where = "\n".join(f"  {name}" for name in files) + "\n  sequence: " + " -> ".join(tracer.reader)
    assert files[0] == "sibyl/api/rest/app.py" and "sibyl/models/runtime.py" in files, where  # the whole call
    assert len(files) <= MAX_FILES and returns <= MAX_RETURNS, f"{len(files)} files, {returns} returns:\n{where}"
