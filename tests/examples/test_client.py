"""examples/client.py against a real server: the example predictor answers; an unreachable target fails fast
with one line. (Its retries, deadlines and round-robin are sibyl.client's: tests/client.)"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from sibyl.config import EXAMPLE_STORE
from tests.support.inproc import running_server

CLIENT_PATH = Path(__file__).resolve().parents[2] / "examples" / "client.py"


@pytest.fixture(scope="module")
def client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_client", CLIENT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_predictor_answers(
    client: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_server(tmp_path, f"file://{EXAMPLE_STORE}", features={"backend": "memory"}) as server:
        code = await asyncio.to_thread(client.main, ["--target", f"dns:///127.0.0.1:{server.port}"])
    assert code == 0
    response = json.loads(capsys.readouterr().out)
    assert response["predictor"] == "example"
    assert response["numRows"] == 2
    assert len(response["results"][0]["scores"]) == 2 * response["results"][0].get("dim", 1)


def test_unreachable_target_fails_fast_with_one_line(client: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.servers import free_port

    assert client.main(["--target", f"dns:///127.0.0.1:{free_port()}", "--deadline-ms", "2000"]) == 1
    assert capsys.readouterr().err.startswith("Predict failed: UNAVAILABLE")
