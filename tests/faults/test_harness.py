"""The load harness itself: while any load runs, the heap it started beside is left out of collections (a full
collection of pytest's heap would pause the client and read as the server's stall); after the last, it is not."""

from __future__ import annotations

import gc
from pathlib import Path

from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import Load, OpenLoad
from tests.support.inproc import running_server
from tests.support.onnxgen import publish_logistic


def request(i: int) -> PredictRequest:
    return PredictRequest(predictor="p", rows=[FeatureRow(features={"amount": float(i % 7)})])


async def test_the_heap_is_frozen_while_loads_run_and_thawed_after(tmp_path: Path) -> None:
    catalog = Catalog(FileStore(tmp_path / "store"))
    publish_logistic(catalog, "m", "1")
    catalog.promote("p", "m@1")
    before = [object() for _ in range(1_000)]  # made before the loads: frozen with the rest of the heap
    assert gc.get_freeze_count() == 0
    async with running_server(tmp_path) as server:
        target = f"127.0.0.1:{server.port}"
        async with Load(target, request, concurrency=2) as closed:
            await closed.settle(20)
            frozen = gc.get_freeze_count()
            assert frozen >= len(before)
            async with OpenLoad(target, request, rate=200.0) as opened:  # nested: frozen once, by the outer
                while len(opened.shots) < 20:
                    await closed.settle(1)
                assert 0 < gc.get_freeze_count() <= frozen  # frozen objects freed meanwhile leave the count
            assert gc.get_freeze_count() > 0, "the inner load's end thawed the outer load's heap"
        assert gc.get_freeze_count() == 0
        assert {o.code for o in closed.outcomes} == {"OK"} and {s.code for s in opened.shots} == {"OK"}
