"""The package layout stays true: imports point one way between packages, no module imports itself round a cycle,
no module grows past 400 lines, the package root stays small, and nothing in the wheel imports test tooling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "sibyl"

# Lower rank = lower layer. A module may import its own package and packages of a strictly lower rank.
# Backends (models, features, predlog) own their settings classes, so config composes them and sits above.
RANK = {
    "errors": 0,
    "v1": 0,  # generated protobuf code
    "kserve": 0,  # generated protobuf code
    "observability": 1,
    "models": 2,
    "features": 3,
    "predlog": 3,
    "serving": 4,
    "config": 5,
    "app": 6,
    "api": 7,
    "embedded": 7,
    "process": 8,
    "cli": 9,
}
ENTRY = {"__init__", "__main__"}  # the public API re-export and `python -m sibyl`: may import anything
MAX_LINES = 400
MAX_ROOT_MODULES = 6


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(module: str, path: Path) -> set[str]:
    """Every sibyl module this one imports, at any depth (function-level imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sibyl")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "sibyl":
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {i for i in _imports(m, p) if i in modules and i != m} for m, p in modules.items()}


def test_every_package_has_a_rank() -> None:
    unranked = {_package(m) for m in _modules()} - set(RANK) - {""} - ENTRY
    assert not unranked, f"give these packages a rank in RANK: {sorted(unranked)}"


def test_imports_point_down() -> None:
    bad = []
    for module, targets in _graph().items():
        src = _package(module)
        if src in ENTRY or src == "":
            continue
        for target in targets:
            dst = _package(target)
            if dst == src or dst == "":
                continue
            if RANK[dst] >= RANK[src]:
                bad.append(f"{module} -> {target} ({src} rank {RANK[src]} may not import {dst} rank {RANK[dst]})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if _package(nxt) in ENTRY or nxt == "sibyl":
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state and _package(node) not in ENTRY:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(m for m, p in _modules().items() if "_pb2" not in p.name))
def test_module_size(module: str) -> None:
    lines = len(_modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concern (limit {MAX_LINES})"


def test_root_stays_small() -> None:
    root = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"sibyl/ root holds {root}: wiring and public API only"


def test_no_test_tooling_in_the_package() -> None:
    offenders = [
        m
        for m, p in _modules().items()
        for i in _imports(m, p)
        | {n.names[0].name for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Import)}
        if i.split(".")[0] in {"tests", "pytest", "hypothesis"}
    ]
    assert not offenders, f"product modules import test tooling: {offenders}"
    assert not (ROOT / "testing").exists(), "test-server launchers live in tests/support, not in the wheel"


def test_layering_test_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself can fail: an upward import in a scratch module is caught."""
    path = tmp_path / "probe.py"
    path.write_text("from sibyl.cli import main\nfrom .service import x\n")
    found = _imports("sibyl.serving.probe", path)
    assert "sibyl.cli" in found and "sibyl.serving.service" in found
