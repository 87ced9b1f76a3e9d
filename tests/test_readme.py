"""Every code block of the README runs as written, after the README's own install command, against a real
`sibyl serve` on the embedded defaults (the quick start's own command, on its default ports).

Two blocks are not run here: the quick start's install-and-serve (its serve command is the server these blocks
talk to; the install is the test command's own `pip install -e '.[test]'`, a superset) and the test command
itself (this suite). Blocks without a language (layouts, trees) are text."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import port_is_free

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEFAULT_PORTS = {"gRPC": 50051, "HTTP": 8080, "metrics": 9100, "monitor": 9101}  # what the README's commands address
RUNNABLE = ("bash", "python")


def code_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README.read_text(), re.M | re.S)]


def serve_command() -> list[str]:
    """The quick start's serve command: its install-and-serve block, after the install."""
    (block,) = [text for lang, text in code_blocks() if lang == "bash" and "sibyl serve" in text]
    install, serve = block.strip().split("&&")
    assert install.strip().startswith("pip install -e ."), "the quick start installs, then serves"
    argv = shlex.split(serve)
    assert argv[:3] == ["python", "-m", "sibyl"], argv
    return [sys.executable, *argv[1:]]


def is_test_command(text: str) -> bool:
    return text.strip() == "bash scripts/test.sh"


def blocks_to_run() -> list[tuple[str, str]]:
    return [
        (lang, text)
        for lang, text in code_blocks()
        if lang in RUNNABLE and "sibyl serve" not in text and not is_test_command(text)
    ]


def test_the_readme_names_the_ci_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(is_test_command(text) for lang, text in code_blocks() if lang == "bash")
    assert "bash scripts/test.sh" in ci, ".ci/run must call the README's test command"


def test_python_blocks_import_only_what_the_plain_install_brings() -> None:
    """The README installs with `pip install -e .`: its Python blocks may not need an extra (pandas, say)."""
    base = {"sibyl", "numpy", "grpc"} | set(sys.stdlib_module_names)
    for lang, text in code_blocks():
        if lang != "python":
            continue
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            outside = {n.split(".")[0] for n in names} - base
            assert not outside, f"README block imports {sorted(outside)}, which `pip install -e .` lacks:\n{text}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The quick start's server, in a folder of its own; yields that folder (where its log files are)."""
    busy = [f"{what} port {port}" for what, port in DEFAULT_PORTS.items() if not port_is_free(port)]
    assert not busy, f"the README's commands address the default ports; free {', '.join(busy)} to run this test"
    cwd = tmp_path_factory.mktemp("readme-serve")
    log = (cwd / "serve.log").open("w")
    proc = subprocess.Popen(serve_command(), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _ready():
            assert proc.poll() is None, f"sibyl serve exited: {(cwd / 'serve.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"not ready after 60 s: {(cwd / 'serve.log').read_text()[-2000:]}"
            time.sleep(0.2)
        yield cwd
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{DEFAULT_PORTS['HTTP']}/v2/health/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize(
    ("lang", "text"), blocks_to_run(), ids=[f"{lang}:{text.splitlines()[0][:40]}" for lang, text in blocks_to_run()]
)
def test_readme_block_runs_as_written(served: Path, lang: str, text: str, tmp_path: Path) -> None:
    script = tmp_path / ("block.sh" if lang == "bash" else "block.py")
    script.write_text(("set -euo pipefail\n" if lang == "bash" else "") + text)
    # The console script `sibyl` is where the install put it: beside this interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # The blocks run from the checkout (they name its files), "in the same folder" as the server as far as its
    # files go: the prediction log and outcomes the monitor reads are the server's; its state goes to tmp.
    env |= {"SIBYL_PREDLOG__PATH": str(served / "predictions.jsonl"), "SIBYL_MONITOR__STATE_DIR": str(tmp_path / "m")}
    runner = ["bash", str(script)] if lang == "bash" else [sys.executable, str(script)]
    done = subprocess.run(runner, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"README block failed ({done.returncode}):\n{text}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"README block printed nothing:\n{text}"
    assert '"error"' not in done.stdout, f"README block was refused:\n{text}\n--- stdout\n{done.stdout[-3000:]}"
