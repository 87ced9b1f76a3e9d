"""sibyl.client: a small blocking and asyncio client for sibyl.v1.PredictionService (and OutcomeService) over the
published stubs.

`Client` and `AsyncClient`, one long-lived channel each (client.py). Channel with keepalive and round-robin over
DNS, a deadline per call, retries of UNAVAILABLE and RESOURCE_EXHAUSTED with backoff (gRPC's retryPolicy), bearer
token and TLS (channel.py); numpy, pandas, column mappings or row dicts in, sent in the dense form, and numpy or
pandas out (frames.py); outcomes reported as row dicts or columns, in calls of bounded size (outcomes.py).
Used by `sibyl predict` and `sibyl score --target`.

May import (tests/test_layout.py RANK): errors and the generated v1 code only, so it ships to callers without
the server's dependencies mattering; the cli imports it.
"""

from sibyl.client.channel import Tls
from sibyl.client.client import AsyncClient, Client
from sibyl.client.frames import ModelResult, Prediction, build_request, to_prediction

__all__ = ["AsyncClient", "Client", "ModelResult", "Prediction", "Tls", "build_request", "to_prediction"]
