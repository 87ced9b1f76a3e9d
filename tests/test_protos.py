"""The generated code in sibyl/v1 and sibyl/kserve must match protos/: regenerate with `python scripts/gen_protos.py`.

The generator is pinned (pyproject.toml's `dev` extra): its output names its own version, so the check compares
bytes only against the pinned generator, and a new grpcio-tools on PyPI cannot turn CI red."""

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pinned_generator() -> str:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [r for r in extras["dev"] if r.startswith("grpcio-tools")]
    found = re.fullmatch(r"grpcio-tools==([\d.]+)", pin)
    assert found, f"pin the generator exactly in the dev extra (grpcio-tools==X.Y.Z), not {pin!r}"
    return found.group(1)


def test_the_generator_is_the_pinned_one() -> None:
    pinned = pinned_generator()
    assert version("grpcio-tools") == pinned, f"install the pinned generator: pip install 'grpcio-tools=={pinned}'"
    committed = (ROOT / "sibyl" / "v1" / "predict_pb2_grpc.py").read_text()
    assert f"GRPC_GENERATED_VERSION = '{pinned}'" in committed, "the committed stubs came from another generator"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pinned = pinned_generator()
    if version("grpcio-tools") != pinned:  # test_the_generator_is_the_pinned_one says what to install
        raise AssertionError(f"grpcio-tools {version('grpcio-tools')} is not the pinned {pinned}")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*") if "__pycache__" not in p.parts)
    assert generated, "nothing was generated"
    for rel in generated:
        committed = ROOT / rel
        assert committed.exists(), f"{rel} is not committed: run python scripts/gen_protos.py"
        assert committed.read_bytes() == (tmp_path / rel).read_bytes(), f"{rel} is stale: run scripts/gen_protos.py"
