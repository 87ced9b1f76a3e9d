import asyncio
import json
import uuid
from pathlib import Path

import pytest

from sibyl.errors import NotFound
from sibyl.models.catalog import Catalog
from sibyl.models.predictor import ModelRef
from sibyl.models.registry import ModelRegistry
from sibyl.models.store import FileStore, S3Store
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


async def x2_published_after_x1_was_used(catalog: Catalog) -> ModelRegistry:
    """A started registry that served unversioned x as x@1, then polled (refresh) after x@2 was published."""
    reg, _ = registry(catalog)
    await reg.start(poll=False)
    publish_logistic(catalog, "x", "1")
    assert (await reg.model(ModelRef("x"))).version == "1"
    publish_logistic(catalog, "x", "2")
    await reg.refresh()
    return reg


async def test_unversioned_extra_follows_newest(catalog: Catalog) -> None:
    reg = await x2_published_after_x1_was_used(catalog)
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
    reg = await x2_published_after_x1_was_used(catalog)
    assert ("x", "2") in reg.snapshot.models, "the poll preloaded x@2 and then dropped it"
    loads: list[ModelRef] = []
    load = reg._load

    async def counting_load(ref: ModelRef) -> object:
        loads.append(ref)
        return await load(ref)

    reg._load = counting_load  # type: ignore[method-assign]
    assert (await reg.model(ModelRef("x"))).version == "2"
    assert loads == [], f"a request loaded {loads} that the poll had already loaded"


@pytest.fixture(params=["file", "s3"])
def any_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    """An empty catalog on a folder, or on the session's S3 API server (moto) in a bucket of its own."""
    if request.param == "file":
        return Catalog(FileStore(tmp_path))
    from tests.support.servers import make_bucket

    s3 = request.getfixturevalue("s3_server")
    request.getfixturevalue("aws_env")
    s3.start()
    bucket = f"reg-{uuid.uuid4().hex[:12]}"
    make_bucket(s3.endpoint_url, bucket)
    return Catalog(S3Store(bucket, "prod", s3.endpoint_url, "us-east-1"))


def upload_manifest_first(catalog: Catalog, version: str, model_bytes: bytes | None) -> bytes:
    """What `aws s3 sync` does with a version folder: manifest.json lands before model.onnx (None: not yet)."""
    good = logistic_onnx([0.3] * 5)
    publish_raw(catalog, "m", version, good)  # both files, then take model.onnx away again
    manifest = catalog.store.read(f"models/m/{version}/manifest.json")
    for key in (f"models/m/{version}/model.onnx", f"models/m/{version}/manifest.json"):
        delete(catalog, key)
    catalog.store.write(f"models/m/{version}/manifest.json", manifest)
    if model_bytes is not None:
        catalog.store.write(f"models/m/{version}/model.onnx", model_bytes)
    return good


def delete(catalog: Catalog, key: str) -> None:
    store = catalog.store
    if isinstance(store, FileStore):
        (store.root / key).unlink()
    else:
        assert isinstance(store, S3Store)
        store._s3.delete_object(Bucket=store.bucket, Key=store._key(key))


async def test_version_uploaded_manifest_first_applies_once_complete(any_catalog: Catalog) -> None:
    catalog = any_catalog
    publish_logistic(catalog, "m", "1")
    catalog.promote("p", "m@1")
    reg, _ = registry(catalog)
    await reg.start(poll=False)
    good = upload_manifest_first(catalog, "2", None)
    assert catalog.versions("m") == ["1"], "a version without its model file is not published yet"
    catalog.store.write("predictors/p.json", b'{"name": "p", "primary": "m@2"}')  # promoted during the upload
    await reg.refresh()
    assert reg.predictor("p").primary == "m@1"  # incomplete: the old version keeps serving
    await reg.refresh()
    catalog.store.write("models/m/2/model.onnx", good)  # the upload finishes; the predictor file stays as it is
    await reg.refresh()
    assert reg.predictor("p").primary == "m@2"
    assert (await reg.model(ModelRef("m", "2"))).version == "2"


async def test_partly_copied_model_is_tried_again_once_the_copy_completes(catalog: Catalog) -> None:
    reg, metrics = registry(catalog)
    await reg.start(poll=False)
    good = upload_manifest_first(catalog, "2", b"")  # cp -r caught mid-copy: model.onnx empty, sha256 mismatch
    catalog.promote("p", "m@2")
    await reg.refresh()
    assert reg.predictor("p").primary == "m@1"
    assert sample(metrics, "sibyl_model_loads_total", model="m", outcome="failed") == 1
    catalog.store.write("models/m/2/model.onnx", good)
    await reg.refresh()
    assert reg.predictor("p").primary == "m@2"


async def test_a_hand_edited_predictor_whose_slice_the_primary_does_not_take_is_not_applied(catalog: Catalog) -> None:
    reg, _ = registry(catalog)
    await reg.start(poll=False)
    config = json.loads(catalog.store.read("predictors/p.json"))
    config["slices"] = [{"name": "x", "feature": "no_such_input"}]
    catalog.store.write("predictors/p.json", json.dumps(config).encode())
    await reg.refresh()
    assert reg.predictor("p").slices == []  # the config before keeps serving
    config["slices"] = [{"name": "amt", "feature": "amount", "edges": [1]}]
    catalog.store.write("predictors/p.json", json.dumps(config, indent=1).encode())
    await reg.refresh()
    assert [s.name for s in reg.predictor("p").slices] == ["amt"]
