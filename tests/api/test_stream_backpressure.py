"""PredictStream holds a bounded amount for a client that writes and never reads (issue 30): the server stops
reading the stream once STREAM_WINDOW answers wait to be written, and HTTP/2 flow control then holds the client.

Before the fix the window was released when an answer was queued, not written: the server read and scored every
request and queued every answer (~3 MiB per 1,000 requests in the report). Counted, not timed: the scored calls
(sibyl_requests_total) and the answers waiting (sibyl_stream_pending_responses) while the client does not read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np

from sibyl.api.v1_servicer import STREAM_WINDOW
from sibyl.v1.predict_pb2 import DenseRows, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import running_server

REQUESTS, ROWS = 1_000, 200  # 4 MB of requests; their answers are far more than the client's window holds
NAMES = ["amount", "age", "rating", "emb[0]", "emb[1]"]
STEADY_POLLS = 15  # polls 0.2 s apart with no new scored call: the server has stopped reading
# The client's receive window stays at its initial size (no BDP probing): few answers fit in the buffers.
OPTIONS = [("grpc.http2.bdp_probe", 0)]


async def test_a_client_that_never_reads_makes_the_server_stop_reading(store: Path) -> None:
    values = np.ones((ROWS, len(NAMES)), "<f4").tobytes()
    async with running_server(store, predlog={"sink": "none"}) as server:
        registry = server.metrics.registry

        def scored() -> float:
            return registry.get_sample_value("sibyl_requests_total", {"predictor": "p", "code": "OK"}) or 0.0

        def pending() -> float:
            return registry.get_sample_value("sibyl_stream_pending_responses") or 0.0

        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS) as channel:
            call = PredictionServiceStub(channel).PredictStream()
            written = 0

            async def write_all() -> None:
                nonlocal written
                for i in range(REQUESTS):
                    dense = DenseRows(feature_names=NAMES, values=values, num_rows=ROWS)
                    await call.write(PredictRequest(request_id=f"r{i}", predictor="p", dense=dense))
                    written += 1
                await call.done_writing()

            writer = asyncio.create_task(write_all())
            last, steady, most_pending, polls = -1.0, 0, 0.0, 0
            while steady < STEADY_POLLS and last < REQUESTS and polls < 300:  # 300 polls: a hang guard
                await asyncio.sleep(0.2)
                now = scored()
                steady = steady + 1 if now == last else 0
                last, most_pending, polls = now, max(most_pending, pending()), polls + 1
            print(f"\nnot reading: {written} written, {last:.0f} scored, at most {most_pending:.0f} answers waiting")
            assert most_pending <= STREAM_WINDOW
            assert last < REQUESTS / 2, f"the server read and scored {last:.0f} of {REQUESTS} requests nobody read"

            answered = [reply.request_id async for reply in call]  # reading again: everything flows
            await writer
    assert sorted(answered) == sorted(f"r{i}" for i in range(REQUESTS)), "every request answered exactly once"
    assert pending() == 0
