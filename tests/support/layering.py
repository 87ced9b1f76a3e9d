"""Import-graph checks for a source tree, read with ast (nothing is imported): the modules of a package, what
each imports at any depth, cycles, and imports that point up a ranking of subpackages.

Used by tests/test_layout.py (sibyl/) and tests/bench/test_layout_benchmarks.py (benchmarks/)."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package directory `root`."""
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__")] = path
    return out


def package(module: str) -> str:
    """The first-level subpackage (or root module) a module belongs to; "" for the package's __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(module: str, path: Path, known: set[str], source: str | None = None) -> set[str]:
    """The modules of `known` this one imports, at any depth (function-level and TYPE_CHECKING ones too).
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
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return found & known - {module}


def graph(mods: Mapping[str, Path]) -> dict[str, set[str]]:
    known = set(mods)
    return {m: imports(m, p, known) for m, p in mods.items()}


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Every back edge found by a depth-first walk, as the cycle it closes."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    found: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return found


def package_graph(edges: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded onto subpackages (edges inside one subpackage dropped)."""
    out: dict[str, set[str]] = {}
    for module, targets in edges.items():
        src = package(module)
        out.setdefault(src, set()).update(package(t) for t in targets if package(t) != src)
    for targets in list(out.values()):
        for t in targets:
            out.setdefault(t, set())
    return out


def upward(edges: Mapping[str, set[str]], rank: Mapping[str, int], exempt: set[str] = frozenset()) -> list[str]:
    """Imports from one subpackage into another of the same or a higher rank; `exempt` sources may import all."""
    bad = []
    for module, targets in edges.items():
        src = package(module)
        if src in exempt:
            continue
        for target in targets:
            dst = package(target)
            if dst != src and dst not in exempt and rank[dst] >= rank[src]:
                bad.append(f"{module} -> {target} ({src} rank {rank[src]} may not import {dst} rank {rank[dst]})")
    return sorted(bad)
