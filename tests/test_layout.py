"""The package layout stays true: imports point one way between packages, no module imports itself round a cycle,
no module grows past 400 lines, the package root stays small, nothing in the wheel imports test tooling, and each
package's docstring names every module of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.layering import cycles, graph, imports, modules, package, upward

ROOT = Path(__file__).resolve().parent.parent / "sibyl"

# Lower rank = lower layer. A module may import its own package and packages of a strictly lower rank.
# Backends (models, features, predlog) own their settings classes, so config composes them and sits above.
RANK = {
    "errors": 0,
    "compat": 0,  # shims over dependencies' private APIs: they import only the library they wrap
    "v1": 0,  # generated protobuf code
    "kserve": 0,  # generated protobuf code
    "gil": 0,  # how threads share the GIL with the serving loop: the standard library only
    "observability": 1,
    "client": 1,  # sibyl.client: callers' library over the v1 stubs; errors and v1 only, the cli uses it
    "quality": 1,  # metric code shared by the evaluator and the Spark job: numpy and errors only
    "models": 2,
    "features": 3,
    "predlog": 3,
    "serving": 4,
    "config": 5,
    "app": 6,
    "batch": 6,  # batch scoring builds on serving's assembly, models' runtime and features, as app does; no gRPC
    "monitor": 6,  # the outcome evaluator: serving's slices, models' store, quality's statistics
    "api": 7,
    "embedded": 7,
    "process": 8,
    "cli": 9,
}
ENTRY = {"__init__", "__main__"}  # the public API re-export and `python -m sibyl`: may import anything
MAX_LINES = 400
MAX_ROOT_MODULES = 6


ENTRY_MODULES = {"sibyl", "sibyl.__main__"}


def _graph() -> dict[str, set[str]]:
    return graph(modules(ROOT))


def test_every_package_has_a_rank() -> None:
    unranked = {package(m) for m in modules(ROOT)} - set(RANK) - {""} - ENTRY
    assert not unranked, f"give these packages a rank in RANK: {sorted(unranked)}"


def test_imports_point_down() -> None:
    bad = upward(_graph(), RANK, exempt={"", *ENTRY})
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    edges = {m: t - ENTRY_MODULES for m, t in _graph().items() if m not in ENTRY_MODULES}
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("module", sorted(m for m, p in modules(ROOT).items() if "_pb2" not in p.name))
def test_module_size(module: str) -> None:
    lines = len(modules(ROOT)[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concern (limit {MAX_LINES})"


def test_root_stays_small() -> None:
    root = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"sibyl/ root holds {root}: wiring and public API only"


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_tooling_in_the_package() -> None:
    offenders = sorted(
        f"{m} imports {name}"
        for m, p in modules(ROOT).items()
        for name in _top_level_imports(p) & {"tests", "pytest", "hypothesis", "benchmarks"}
    )
    assert not offenders, f"product modules import test tooling: {offenders}"
    assert not (ROOT / "testing").exists(), "test-server launchers live in tests/support, not in the wheel"


def test_layering_test_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself can fail: an upward import and a cycle in scratch modules are caught."""
    known = set(modules(ROOT))
    source = "from sibyl.cli import main\nfrom .service import x\n"
    found = imports("sibyl.serving.probe", tmp_path / "probe.py", known, source)
    assert found == {"sibyl.cli.main", "sibyl.serving.service"}  # `from pkg import mod` is pkg.mod
    assert upward({"sibyl.serving.probe": found}, RANK) == [
        "sibyl.serving.probe -> sibyl.cli.main (serving rank 4 may not import cli rank 9)"
    ]
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def _packages() -> list[str]:
    return sorted(".".join(p.parent.relative_to(ROOT.parent).parts) for p in ROOT.rglob("__init__.py"))


@pytest.mark.parametrize("name", _packages())
def test_package_docstring_names_every_module(name: str) -> None:
    """A package's __init__ docstring is its map: each module file (not __init__ or __main__, not generated *_pb2*)
    appears there by its module name, so a module added or renamed without its line in the map fails here."""
    folder = ROOT.parent.joinpath(*name.split("."))
    docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    missing = sorted(
        p.stem
        for p in folder.glob("*.py")
        if p.stem not in ENTRY and "_pb2" not in p.stem and not re.search(rf"\b{p.stem}\b", docstring)
    )
    assert not missing, f"{name}/__init__.py's docstring does not name {missing}: say what each module holds"
