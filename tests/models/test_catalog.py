import hashlib
from pathlib import Path

import pytest

from sibyl.errors import FailedPrecondition, InvalidArgument, NotFound
from sibyl.models.catalog import Catalog, version_key
from sibyl.models.predictor import ModelRef
from sibyl.models.store import FileStore
from tests.support.onnxgen import publish_logistic


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(FileStore(tmp_path))


def test_publish_writes_manifest_with_sha(catalog: Catalog) -> None:
    manifest = publish_logistic(catalog, "m", "1")
    assert catalog.models() == {"m": ["1"]}
    assert catalog.read_manifest(manifest_ref("m", "1")).sha256 == manifest.sha256

    assert hashlib.sha256(catalog.read_model(manifest_ref("m", "1"))).hexdigest() == manifest.sha256


def manifest_ref(name: str, version: str) -> ModelRef:
    return ModelRef(name, version)


def test_versions_are_immutable(catalog: Catalog) -> None:
    publish_logistic(catalog, "m", "1")
    with pytest.raises(FailedPrecondition, match="immutable"):
        publish_logistic(catalog, "m", "1")


def test_versions_sort_naturally(catalog: Catalog) -> None:
    for v in ["2", "10", "1"]:
        publish_logistic(catalog, "m", v)
    assert catalog.versions("m") == ["1", "2", "10"]
    assert sorted(["v10", "v2"], key=version_key) == ["v2", "v10"]


def test_promote_rollback_and_history(catalog: Catalog) -> None:
    publish_logistic(catalog, "m", "1")
    publish_logistic(catalog, "m", "2")
    assert catalog.promote("p", "m@1").primary == "m@1"
    assert catalog.promote("p", "m").primary == "m@2"  # unversioned: the newest
    assert catalog.rollback("p").primary == "m@1"
    history = catalog.history("p")
    assert [(r.action, r.from_primary, r.to_primary) for r in history] == [
        ("promote", None, "m@1"),
        ("promote", "m@1", "m@2"),
        ("rollback", "m@2", "m@1"),
    ]
    assert all(r.actor for r in history)


def test_rollback_without_history_fails(catalog: Catalog) -> None:
    publish_logistic(catalog, "m", "1")
    catalog.promote("p", "m@1")
    with pytest.raises(FailedPrecondition, match="no earlier primary"):
        catalog.rollback("p")
    with pytest.raises(NotFound):
        catalog.rollback("unknown")


def test_rollback_returns_to_a_hand_written_primary(catalog: Catalog, tmp_path: Path) -> None:
    """A predictor file written by hand (as the bundled example's) has no audit record of its own: the first
    promote's from-primary is what served before it, so rollback goes back there."""
    publish_logistic(catalog, "m", "1")
    publish_logistic(catalog, "m", "2")
    (tmp_path / "predictors").mkdir(exist_ok=True)
    (tmp_path / "predictors" / "p.json").write_text('{"name": "p", "primary": "m@1"}')
    catalog.set_shadow("p", "m@2", 0.5)  # changes that leave the primary alone do not count
    assert catalog.promote("p", "m@2").primary == "m@2"
    assert catalog.rollback("p").primary == "m@1"
    with pytest.raises(FailedPrecondition, match="no earlier primary"):
        catalog.rollback("p")


def test_promote_unknown_model_is_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFound, match="ghost"):
        catalog.promote("p", "ghost@1")


def test_shadow_and_experiment(catalog: Catalog) -> None:
    publish_logistic(catalog, "m", "1")
    publish_logistic(catalog, "s", "1")
    catalog.promote("p", "m@1")
    assert [s.model for s in catalog.set_shadow("p", "s@1", 0.5).shadows] == ["s@1"]
    assert catalog.set_shadow("p", "s@1", 0).shadows == []
    config = catalog.set_experiment("p", "b", "s@1", 0.3)
    assert [(a.name, a.traffic) for a in config.experiments] == [("b", 0.3)]
    with pytest.raises(InvalidArgument, match="more than 1"):
        catalog.set_experiment("p", "c", "s@1", 0.9)
    assert catalog.set_experiment("p", "b", None, 0).experiments == []
    assert [r.action for r in catalog.history("p")][-2:] == ["experiment", "end-experiment"]


def test_bad_names_are_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidArgument):
        catalog.promote("../p", "m@1")
    with pytest.raises(InvalidArgument):
        publish_logistic(catalog, "m/x", "1")


def test_rollback_walks_the_history_back(catalog: Catalog) -> None:
    for v in ("1", "2", "3"):
        publish_logistic(catalog, "m", v)
        catalog.promote("p", f"m@{v}")
    assert catalog.rollback("p").primary == "m@2"
    assert catalog.rollback("p").primary == "m@1"  # not back to m@3: each rollback goes one step further back
    with pytest.raises(FailedPrecondition, match="no earlier primary"):
        catalog.rollback("p")
    catalog.promote("p", "m@3")
    catalog.set_shadow("p", "m@2", 0.5)  # changes that keep the primary are not steps of the history
    assert catalog.rollback("p").primary == "m@1"
