import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sibyl.config import FeatureSettings
from sibyl.errors import ConfigError
from sibyl.features import build_fetcher
from sibyl.features.fetcher import NullFetcher
from sibyl.models.manifest import FeatureSpec
from sibyl.observability.metrics import Metrics

ORDERS = FeatureSpec(name="orders", entity="consumer_id")
EMB = FeatureSpec(name="emb", entity="consumer_id", dtype="float_vector", dim=2, default=(0.0, 0.0))
TAGS = FeatureSpec(name="tags", entity="consumer_id", dtype="int_list", dim=3, default=(0.0,) * 3)


def _file(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "features.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def _metrics() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry), registry


async def test_memory_backend_decodes_per_spec(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        [
            {"entity": "consumer_id", "id": "1", "features": {"orders": 3, "emb": [0.5, 1.5], "tags": [4, 5]}},
            {"entity": "consumer_id", "id": 2, "features": {"orders": 7.5}},
        ],
    )
    metrics, _ = _metrics()
    fetcher = build_fetcher(FeatureSettings(backend="memory", memory_file=str(path)), metrics)
    result = await fetcher.fetch(
        {("consumer_id", "1"): [ORDERS, EMB, TAGS], ("consumer_id", "2"): [ORDERS, EMB], ("consumer_id", "3"): [ORDERS]}
    )
    assert not result.degraded
    one = result.values[("consumer_id", "1")]
    assert one["orders"] == 3.0 and one["emb"].tolist() == [0.5, 1.5] and one["tags"].tolist() == [4, 5, 0]
    assert result.values[("consumer_id", "2")] == {"orders": 7.5}
    assert ("consumer_id", "3") not in result.values
    await fetcher.close()


async def test_wrong_type_is_missing_counted_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _file(tmp_path, [{"entity": "consumer_id", "id": str(i), "features": {"emb": "oops"}} for i in range(5)])
    metrics, registry = _metrics()
    fetcher = build_fetcher(FeatureSettings(backend="memory", memory_file=str(path)), metrics)
    with caplog.at_level(logging.WARNING, logger="sibyl.features"):
        result = await fetcher.fetch({("consumer_id", str(i)): [EMB] for i in range(5)})
    assert result.values == {}
    assert registry.get_sample_value("sibyl_feature_store_errors_total", {"kind": "decode"}) == 5
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1


def test_missing_memory_file_is_a_config_error(tmp_path: Path) -> None:
    metrics, _ = _metrics()
    with pytest.raises(ConfigError, match="does not exist"):
        build_fetcher(FeatureSettings(backend="memory", memory_file=str(tmp_path / "nope.jsonl")), metrics)


def test_bad_memory_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"entity": "e", "id": "1", "features": {}}\n{not json\n')
    with pytest.raises(ConfigError, match="line 2"):
        build_fetcher(FeatureSettings(backend="memory", memory_file=str(path)), _metrics()[0])


async def test_backend_none_returns_nothing() -> None:
    fetcher = build_fetcher(FeatureSettings(backend="none"), _metrics()[0])
    assert isinstance(fetcher, NullFetcher)
    result = await fetcher.fetch({("consumer_id", "1"): [ORDERS]})
    assert result.values == {} and not result.degraded


async def test_example_file_loads() -> None:
    fetcher = build_fetcher(FeatureSettings(), _metrics()[0])
    result = await fetcher.fetch(
        {("consumer_id", "1"): [ORDERS, FeatureSpec(name="consumer_orders_30d", entity="consumer_id")]}
    )
    assert result.values[("consumer_id", "1")] == {"consumer_orders_30d": 4.0}
