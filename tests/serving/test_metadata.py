"""What PredictionService answers besides a prediction, without gRPC: readiness, the model a predictor (and a
version) is scored by, the repository, and per-predictor call statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sibyl.errors import NotFound
from sibyl.features.fetcher import NullFetcher
from sibyl.models.catalog import Catalog
from sibyl.models.registry import ModelRegistry
from sibyl.models.store import FileStore
from sibyl.observability.metrics import Metrics
from sibyl.predlog.factory import NullSink
from sibyl.serving.after_response import AfterResponse
from sibyl.serving.metadata import RepositoryEntry, override
from sibyl.serving.service import PredictionService
from tests.support.onnxgen import publish_logistic


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[PredictionService]:
    catalog = Catalog(FileStore(tmp_path))
    publish_logistic(catalog, "m", "1")
    publish_logistic(catalog, "m", "2")
    catalog.promote("p", "m@1")
    metrics = Metrics()
    registry = ModelRegistry(catalog, metrics, poll_interval_s=60)
    await registry.start(poll=False)
    yield PredictionService(registry, NullFetcher(), NullSink(), AfterResponse(metrics, 8, 1), metrics)
    await registry.stop()


def test_a_version_names_the_primary_model_or_any_model() -> None:
    assert override("m@1", "") == ""
    assert override("m@1", "7") == "m@7"
    assert override("m@1", "s@3") == "s@3"


async def test_ready_until_draining(service: PredictionService) -> None:
    assert service.live() and service.ready()
    service.draining = True
    assert not service.ready() and service.live()


async def test_model_ready_loads_nothing(service: PredictionService) -> None:
    assert service.model_ready("p") and service.model_ready("p", "1") and service.model_ready("p", "m@1")
    assert not service.model_ready("p", "2"), "m@2 is in the store but not loaded"
    assert not service.model_ready("nope")
    assert service.versions("p") == ["1"] and service.versions("nope") == []


async def test_model_info_is_the_model_a_call_would_be_scored_by(service: PredictionService) -> None:
    info = await service.model_info("p")
    assert (info.predictor, info.override, info.ref) == ("p", "", "m@1")
    assert info.features == [("amount", 1), ("age", 1), ("rating", 1), ("emb", 2)]
    assert info.entities == ["consumer_id", "store_id"]
    assert info.input_name == "input" and info.columns == ["amount", "age", "rating", "emb[0]", "emb[1]"]
    pinned = await service.model_info("p", "2")  # loaded on demand, as a V2 call with that version would
    assert (pinned.override, pinned.ref) == ("m@2", "m@2")
    assert service.model_ready("p", "2") and service.versions("p") == ["1", "2"]
    with pytest.raises(NotFound):
        await service.model_info("nope")
    with pytest.raises(NotFound, match="m@9"):
        await service.model_info("p", "9")


async def test_repository_lists_serving_predictors(service: PredictionService) -> None:
    assert service.repository() == [RepositoryEntry("p", "m@1", True)]


async def test_statistics_count_only_counted_calls_of_known_predictors(service: PredictionService) -> None:
    service.observe_call("p", "OK", 0.002, rows=3, counted=True)
    service.observe_call("p", "INVALID_ARGUMENT", 0.001, counted=True)
    service.observe_call("p", "OK", 0.002, rows=5)  # not counted (a v1 call): metrics only
    service.observe_call("nope", "NOT_FOUND", 0.001, counted=True)
    (p,) = service.statistics("p")
    assert (p.predictor, p.version) == ("p", "1")
    assert (p.stats.calls, p.stats.rows, p.stats.ok, p.stats.failed) == (1, 3, 1, 1)
    assert p.stats.ok_ns == 2_000_000 and p.stats.last_ms > 0
    assert service.statistics("p", "7")[0].version == "7"
    assert [s.predictor for s in service.statistics()] == ["p"]
    with pytest.raises(NotFound):
        service.statistics("nope")
    sample = service.metrics.registry.get_sample_value
    assert sample("sibyl_requests_total", {"predictor": "p", "code": "OK"}) == 2
    assert sample("sibyl_requests_total", {"predictor": "unknown", "code": "NOT_FOUND"}) == 1
