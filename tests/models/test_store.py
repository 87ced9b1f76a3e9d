from pathlib import Path

import pytest

from sibyl.errors import ConfigError, ModelStoreError, NotFound
from sibyl.models.store import FileStore, S3Store, open_store


def test_file_store_round_trip(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.write("models/a/1/model.onnx", b"abc")
    store.write("predictors/p.json", b"{}")
    assert store.read("models/a/1/model.onnx") == b"abc"
    assert store.list("models") == ["models/a/1/model.onnx"]
    assert store.list("") == ["models/a/1/model.onnx", "predictors/p.json"]
    assert store.list("nothing") == []


def test_file_store_tag_changes_on_write(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert store.tag("x.json") is None
    store.write("x.json", b"1")
    first = store.tag("x.json")
    store.write("x.json", b"22")
    assert first is not None and store.tag("x.json") != first


def test_file_store_missing_key_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nope"):
        FileStore(tmp_path).read("nope")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_escape_the_store(tmp_path: Path, key: str) -> None:
    with pytest.raises(ModelStoreError, match="invalid store key"):
        FileStore(tmp_path).read(key)


def test_open_store_schemes(tmp_path: Path) -> None:
    assert isinstance(open_store(f"file://{tmp_path}"), FileStore)
    assert isinstance(open_store(str(tmp_path)), FileStore)
    assert isinstance(open_store("s3://bucket/prefix", "http://127.0.0.1:1"), S3Store)
    with pytest.raises(ConfigError, match="names no bucket"):
        open_store("s3://")
    with pytest.raises(ConfigError, match="file:///path or s3://"):
        open_store("gs://bucket")
