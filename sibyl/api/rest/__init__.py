"""The KServe V2 REST API on its own port, in the gRPC server's process and event loop: app (a bare ASGI app:
the route table, bearer tokens, body limit, errors), codec (JSON tensors and the binary-data extension straight
to an api.v2 InferCall and the answer straight to JSON, so api.v2.infer and serving.PredictionService do the
work as for a gRPC call), server (uvicorn + httptools), connection (each HTTP/1.1 connection within header size,
count and read-time limits and a pipelining bound), outcomes (POST /v1/outcomes: its JSON body into
sibyl.v1.Outcome messages for api.outcomes).

Part of the api package (tests/test_layout.py RANK): the same imports as the gRPC servicers.
"""

from __future__ import annotations

import importlib.util

STACK = ("uvicorn", "httptools")


def installed() -> bool:
    """uvicorn and httptools are dependencies of sibyl; an install without them serves gRPC only (and says so)."""
    return all(importlib.util.find_spec(name) is not None for name in STACK)
