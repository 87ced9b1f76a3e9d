"""benchmarks/ keeps its layout: no module imports itself round a cycle, and imports between its subpackages
point one way, cli -> suite -> (peers -> scenarios, report) -> load. Read with ast: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"

# Lower rank = lower layer. A module may import its own subpackage and subpackages of a strictly lower rank.
# peers mirror the single-row scenario (its rates), so they sit above scenarios.
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
VENV_ONLY = ("peers/triton_server.py", "peers/mlserver_runtime/")
REPO_PACKAGES = {"benchmarks", "sibyl", "tests"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__")] = path
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(module: str, path: Path, modules: set[str], source: str | None = None) -> set[str]:
    """The modules of `modules` this one imports, at any depth (function-level and TYPE_CHECKING ones too).
    `from pkg import mod` counts as importing pkg.mod, not pkg's __init__."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return found & modules - {module}


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_no_import_cycles_between_modules() -> None:
    cycles = _cycles(_graph(_modules()))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_between_subpackages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _graph(_modules()).items():
        src = _package(module)
        packages.setdefault(src, set()).update(_package(t) for t in targets if _package(t) != src)
    for targets in list(packages.values()):
        for t in targets:
            packages.setdefault(t, set())
    cycles = _cycles(packages)
    assert not cycles, "subpackage cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_subpackage_has_a_rank() -> None:
    unranked = {_package(m) for m in _modules()} - set(RANK)
    assert not unranked, f"give these a rank in RANK: {sorted(unranked)}"


def test_imports_point_down() -> None:
    bad = []
    for module, targets in _graph(_modules()).items():
        src = _package(module)
        for target in targets:
            dst = _package(target)
            if dst != src and RANK[dst] >= RANK[src]:
                bad.append(f"{module} -> {target} ({src} rank {RANK[src]} may not import {dst} rank {RANK[dst]})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


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
    modules = set(_modules())
    source = "from benchmarks.suite import Plan\nfrom . import stats\nfrom benchmarks import load\n"
    found = _imports("benchmarks.load.probe", tmp_path / "probe.py", modules, source)
    assert found == {"benchmarks.suite", "benchmarks.load.stats", "benchmarks.load"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
