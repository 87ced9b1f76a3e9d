import asyncio
from pathlib import Path

import pytest

from sibyl.errors import NotFound
from sibyl.models.catalog import Catalog
from sibyl.models.predictor import ModelRef
from sibyl.models.registry import ModelRegistry
from sibyl.models.store import FileStore
from sibyl.observability.metrics import Metrics
from tests.support.onnxgen import logistic_onnx, publish_logistic, publish_raw


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    c = Catalog(FileStore(tmp_path))
    publish_logistic(c, "m", "1")
    c.promote("p", "m@1")
    return c


def registry(catalog: Catalog) -> tuple[ModelRegistry, Metrics]:
    metrics = Metrics()
    return ModelRegistry(catalog, metrics, poll_interval_s=60), metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def publish_corrupt(catalog: Catalog, version: str, *, bytes_match_sha: bool) -> None:
    """A version whose model.onnx is garbage (sha matches) or whose sha does not match the bytes."""
    garbage = b"not an onnx model"
    publish_raw(catalog, "m", version, garbage, sha_of=None if bytes_match_sha else logistic_onnx([0.1] * 5))


async def test_start_loads_predictors(catalog: Catalog) -> None:
    reg, metrics = registry(catalog)
    await reg.start(poll=False)
    assert reg.predictor("p").primary == "m@1"
    assert (await reg.model(ModelRef("m", "1"))).version == "1"
    assert sample(metrics, "sibyl_model_loaded", model="m", version="1") == 1
    with pytest.raises(NotFound, match="'q' not found"):
        reg.predictor("q")


async def test_promote_swaps_and_unloads_old(catalog: Catalog) -> None:
    reg, metrics = registry(catalog)
    await reg.start(poll=False)
    publish_logistic(catalog, "m", "2")
    catalog.promote("p", "m@2")
    await reg.refresh()
    assert reg.predictor("p").primary == "m@2"
    assert set(reg.snapshot.models) == {("m", "2")}
    assert sample(metrics, "sibyl_model_loaded", model="m", version="1") is None


@pytest.mark.parametrize("bytes_match_sha", [True, False])
async def test_corrupt_version_never_replaces_a_good_one(catalog: Catalog, bytes_match_sha: bool) -> None:
    reg, metrics = registry(catalog)
    await reg.start(poll=False)
    publish_corrupt(catalog, "3", bytes_match_sha=bytes_match_sha)
    catalog.promote("p", "m@3")
    await reg.refresh()
    assert reg.predictor("p").primary == "m@1"
    assert sample(metrics, "sibyl_model_loads_total", model="m", outcome="failed") == 1
    await reg.refresh()  # not retried while unchanged
    assert sample(metrics, "sibyl_model_loads_total", model="m", outcome="failed") == 1


async def test_predictor_that_never_loaded_says_why(tmp_path: Path) -> None:
    catalog = Catalog(FileStore(tmp_path))
    publish_corrupt(catalog, "1", bytes_match_sha=False)
    catalog.store.write("predictors/p.json", b'{"name": "p", "primary": "m@1"}')
    reg, _ = registry(catalog)
    await reg.start(poll=False)
    with pytest.raises(NotFound, match=r"not serving: .*sha256"):
        reg.predictor("p")


async def test_unversioned_extra_follows_newest(catalog: Catalog) -> None:
    reg, _ = registry(catalog)
    await reg.start(poll=False)
    publish_logistic(catalog, "x", "1")
    assert (await reg.model(ModelRef("x"))).version == "1"
    publish_logistic(catalog, "x", "2")
    await reg.refresh()
    assert (await reg.model(ModelRef("x"))).version == "2"


async def test_poller_picks_up_changes(catalog: Catalog) -> None:
    metrics = Metrics()
    reg = ModelRegistry(catalog, metrics, poll_interval_s=0.05)
    await reg.start()
    try:
        publish_logistic(catalog, "m", "2")
        catalog.promote("p", "m@2")
        for _ in range(100):
            if reg.predictor("p").primary == "m@2":
                break
            await asyncio.sleep(0.05)
        assert reg.predictor("p").primary == "m@2"
    finally:
        await reg.stop()


async def test_unknown_model_is_not_looked_up_again_within_a_poll_interval(catalog: Catalog) -> None:
    reg = ModelRegistry(catalog, Metrics(), poll_interval_s=0.5)
    await reg.start(poll=False)
    lookups = 0
    resolve = catalog.resolve

    def counting_resolve(ref: ModelRef) -> ModelRef:
        nonlocal lookups
        lookups += 1
        return resolve(ref)

    catalog.resolve = counting_resolve  # type: ignore[method-assign]
    for _ in range(5):
        with pytest.raises(NotFound, match="ghost"):
            await reg.model(ModelRef("ghost"))
    assert lookups == 1
    publish_logistic(catalog, "ghost", "1")
    await asyncio.sleep(0.6)  # one poll interval later the store is asked again
    assert (await reg.model(ModelRef("ghost"))).version == "1"


async def test_newest_version_preloaded_by_a_poll_stays_loaded(catalog: Catalog) -> None:
    """The poll that finds x@2 loads it; the request after it must not load it again on the request path."""
    reg, _ = registry(catalog)
    await reg.start(poll=False)
    publish_logistic(catalog, "x", "1")
    assert (await reg.model(ModelRef("x"))).version == "1"
    publish_logistic(catalog, "x", "2")
    await reg.refresh()
    assert ("x", "2") in reg.snapshot.models, "the poll preloaded x@2 and then dropped it"
    loads: list[ModelRef] = []
    load = reg._load

    async def counting_load(ref: ModelRef) -> object:
        loads.append(ref)
        return await load(ref)

    reg._load = counting_load  # type: ignore[method-assign]
    assert (await reg.model(ModelRef("x"))).version == "2"
    assert loads == [], f"a request loaded {loads} that the poll had already loaded"
