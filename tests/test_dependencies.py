"""pyproject.toml's floors stay checkable and honest: every requirement scripts/test_lowest.sh installs has one
'>=' floor (or one '==' pin, which is its own floor: the proto generator, see tests/test_protos.py), the generated protobuf/gRPC code's own version checks are within the floors, and the proto
generator's grpcio-tools is not something the server installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOWEST_EXTRAS = re.search(r'^EXTRAS="([^"]+)"', (ROOT / "scripts" / "test_lowest.sh").read_text(), re.M)
FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(?:>=|==)\s*([0-9][^,;\s]*)\s*$")


def floors() -> dict[str, tuple[int, ...]]:
    assert LOWEST_EXTRAS, "scripts/test_lowest.sh names its extras in EXTRAS=..."
    wanted = list(PROJECT["dependencies"])
    for extra in LOWEST_EXTRAS.group(1).split(","):
        wanted += [r for r in PROJECT["optional-dependencies"][extra] if not r.startswith("sibyl[")]
    found = {}
    for req in wanted:
        m = FLOOR.match(req)
        assert m, f"{req!r}: give it a single '>=' floor (or '==' pin), the version the lowest-versions job installs"
        found[m.group(1).lower()] = tuple(int(p) for p in re.findall(r"\d+", m.group(3)))
    return found


def test_every_floor_is_one_version_the_lowest_job_can_install() -> None:
    found = floors()
    assert {"redis", "kafka-python", "protobuf", "grpcio", "onnxruntime", "numpy"} <= set(found)
    assert found["redis"] >= (6, 0) and found["kafka-python"] >= (3, 0)  # see the comments in pyproject.toml


def test_generated_code_runs_on_the_floors() -> None:
    found = floors()
    for path in (ROOT / "sibyl").rglob("*_pb2.py"):
        m = re.search(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+)",
                      path.read_text())  # fmt: skip
        assert m, path
        gencode = tuple(map(int, m.groups()))
        assert found["protobuf"] >= gencode, f"{path.name} needs protobuf >= {gencode}; raise the floor"
    for path in (ROOT / "sibyl").rglob("*_pb2_grpc.py"):
        m = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", path.read_text())
        assert m, path
        generated = tuple(map(int, m.group(1).split(".")))
        for package in ("grpcio", "grpcio-health-checking", "grpcio-reflection"):
            assert found[package] >= generated, f"{path.name} needs {package} >= {m.group(1)}; raise the floor"


def test_grpcio_tools_is_a_dev_dependency_only() -> None:
    assert not [r for r in PROJECT["dependencies"] if r.startswith("grpcio-tools")]
    assert any(r.startswith("grpcio-tools") for r in PROJECT["optional-dependencies"]["dev"])
    assert any("dev" in r for r in PROJECT["optional-dependencies"]["test"] if r.startswith("sibyl["))
    server_code = [p for p in (ROOT / "sibyl").rglob("*.py") if "grpc_tools" in p.read_text()]
    assert not server_code, f"the package imports grpc_tools: {server_code}"
