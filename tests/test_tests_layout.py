"""The tests keep their own layout (tests/README.md): no module imports a test module or a conftest.py (helpers
live in tests/support or in a helper module beside their tests), and tests/support holds helpers only."""

from __future__ import annotations

from pathlib import Path

from tests.support.layering import imports, modules

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
SUPPORT = TESTS / "support"


def is_test_module(module: str) -> bool:
    """What pytest collects or loads itself: test_*.py and conftest.py."""
    name = module.rsplit(".", 1)[-1]
    return name.startswith("test_") or name == "conftest"


def imported_test_modules(module: str, path: Path, known: set[str], source: str | None = None) -> set[str]:
    return {m for m in imports(module, path, known, source) if is_test_module(m)}


def test_no_module_imports_a_test_module() -> None:
    known = set(modules(TESTS))
    importers = {**modules(TESTS), **modules(REPO / "benchmarks")}
    offenders = sorted(
        f"{m} imports {', '.join(sorted(found))}"
        for m, path in importers.items()
        if (found := imported_test_modules(m, path, known))
    )
    assert not offenders, "move the helpers these use to tests/support or beside their tests:\n" + "\n".join(offenders)


def test_support_holds_no_test_module() -> None:
    found = sorted(str(p.relative_to(REPO)) for p in SUPPORT.rglob("*.py") if is_test_module(p.stem))
    assert not found, f"tests/support holds helpers only; move these tests next to what they test: {found}"


def test_the_check_sees_a_test_module_import(tmp_path: Path) -> None:
    """The checker itself can fail: imports of a test module, a conftest, and a test module by `from pkg import`."""
    known = {"tests.api.test_v2", "tests.batch.conftest", "tests.cli.test_score", "tests.support.pki"}
    source = (
        "from tests.api.test_v2 import AMOUNTS\n"
        "from tests.support.pki import Pki\n"
        "def f():\n"
        "    from tests.batch.conftest import make_case\n"
        "from . import test_score\n"
    )
    found = imported_test_modules("tests.cli.test_progress", tmp_path / "probe.py", known, source)
    assert found == {"tests.api.test_v2", "tests.batch.conftest", "tests.cli.test_score"}
