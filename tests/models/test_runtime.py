"""onnxruntime session defaults: small batches run on one intra-op thread with no spinning pool; big batches
(models.runtime.MANY_ROWS rows or more) on the configured threads, also without spinning. Read from the
sessions' own options, no timing."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from sibyl.app import inference_threads
from sibyl.config import EXAMPLE_STORE, Settings
from sibyl.models.manifest import Manifest
from sibyl.models.runtime import MANY_ROWS, OnnxModel, session_options

SPINNING = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def example(name: str) -> tuple[Manifest, bytes]:
    folder = EXAMPLE_STORE / "models" / name / "1"
    return Manifest.model_validate_json((folder / "manifest.json").read_text()), (folder / "model.onnx").read_bytes()


def no_spinning(opts: ort.SessionOptions) -> bool:
    return all(opts.get_session_config_entry(key) == "0" for key in SPINNING)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_session_options_never_spin(threads: int) -> None:
    opts = session_options(threads)
    assert no_spinning(opts)
    assert opts.intra_op_num_threads == threads and opts.inter_op_num_threads == 1


@pytest.mark.parametrize("name", ["gbdt", "mlp"])
def test_small_batches_get_one_thread_and_no_spinning_whatever_the_setting(name: str) -> None:
    manifest, data = example(name)
    model = OnnxModel(manifest, data, intra_op_threads=4)
    for rows in (1, 10, 100, MANY_ROWS - 1):
        opts = model.session_for(rows).get_session_options()
        assert opts.intra_op_num_threads == 1, rows
        assert no_spinning(opts), rows
    big = model.session_for(MANY_ROWS).get_session_options()
    assert big.intra_op_num_threads == 4 and no_spinning(big)


def test_one_thread_setting_keeps_one_session_for_every_batch() -> None:
    model = OnnxModel(*example("gbdt"), intra_op_threads=1)
    assert model.session_for(1) is model.session_for(10 * MANY_ROWS)
    assert model.session_for(10 * MANY_ROWS).get_session_options().intra_op_num_threads == 1


def test_big_and_small_sessions_score_alike() -> None:
    manifest, data = example("gbdt")
    model = OnnxModel(manifest, data, intra_op_threads=2)
    matrix = np.repeat(model.default_row, MANY_ROWS, axis=0) + np.linspace(0, 3, MANY_ROWS, dtype=np.float32)[:, None]
    big = model.run(matrix)
    small = np.concatenate([model.run(matrix[i : i + 100]) for i in range(0, MANY_ROWS, 100)])
    assert model.session_for(len(matrix)) is not model.session_for(100)
    np.testing.assert_allclose(big, small, rtol=1e-6, atol=1e-6)


def test_default_settings_give_cores_per_worker_for_big_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert inference_threads(Settings()) == 2  # one worker by default
    assert inference_threads(Settings(server={"workers": 2})) == 1
    assert inference_threads(Settings(server={"inference_threads": 3})) == 3


async def test_served_models_use_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `sibyl serve` loads with default settings on 2 cores: the registry builds its models this way."""
    from sibyl.models.catalog import Catalog
    from sibyl.models.predictor import ModelRef
    from sibyl.models.registry import ModelRegistry
    from sibyl.models.store import open_store
    from sibyl.observability.metrics import Metrics

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    catalog = Catalog(open_store(f"file://{EXAMPLE_STORE}"))
    registry = ModelRegistry(catalog, Metrics(), intra_op_threads=inference_threads(Settings()))
    await registry.start(poll=False)
    try:
        model = await registry.model(ModelRef.parse("gbdt@1"))
    finally:
        await registry.stop()
    small, big = model.session_for(1).get_session_options(), model.session_for(MANY_ROWS).get_session_options()
    assert (small.intra_op_num_threads, big.intra_op_num_threads) == (1, 2)
    assert no_spinning(small) and no_spinning(big)
