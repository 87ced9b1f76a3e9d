"""benchmarks/ keeps its layout: no module imports itself round a cycle, and imports between its subpackages
point one way, cli -> suite -> (peers -> scenarios, report) -> load. Read with ast: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.layering import cycles, graph, imports, modules, package, package_graph, upward

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"

# Lower rank = lower layer. A module may import its own subpackage and subpackages of a strictly lower rank.
# peers hold the comparison, which starts the scenarios' servers (sibyl, echo), so they sit above scenarios.
RANK = {
    "load": 0,
    "report": 1,
    "scenarios": 1,
    "peers": 2,
    "suite": 3,
    "cli": 4,
    "": 5,  # benchmarks/__init__.py: `benchmarks.run()`
    "__main__": 5,
}
# Run inside the peers' own venvs (by path, or from MLServer's PYTHONPATH): nothing of this repo is there.
VENV_ONLY = ("peers/triton_server.py", "peers/mlserver_runtime/", "peers/http_apps/")
REPO_PACKAGES = {"benchmarks", "sibyl", "tests"}


def test_no_import_cycles_between_modules() -> None:
    found = cycles(graph(modules(ROOT)))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_import_cycles_between_subpackages() -> None:
    found = cycles(package_graph(graph(modules(ROOT))))
    assert not found, "subpackage cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_every_subpackage_has_a_rank() -> None:
    unranked = {package(m) for m in modules(ROOT)} - set(RANK)
    assert not unranked, f"give these a rank in RANK: {sorted(unranked)}"


def test_imports_point_down() -> None:
    bad = upward(graph(modules(ROOT)), RANK)
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_peer_venv_code_imports_nothing_of_this_repo() -> None:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(VENV_ONLY):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            else:
                continue
            bad += [f"{rel} imports {n}" for n in names if n.startswith(".") or n.split(".")[0] in REPO_PACKAGES]
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    known = set(modules(ROOT))
    source = "from benchmarks.suite import Plan\nfrom . import stats\nfrom benchmarks import load\n"
    found = imports("benchmarks.load.probe", tmp_path / "probe.py", known, source)
    assert found == {"benchmarks.suite", "benchmarks.load.stats", "benchmarks.load"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert upward({"benchmarks.load.probe": found}, RANK) != []
