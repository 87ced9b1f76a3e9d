"""Each peer server in a venv of its own under .bench-venvs/ (gitignored), created on demand with pinned versions.

MLServer, tritonclient/pytriton, KServe, BentoML, LitServe and Ray Serve pin protobuf, uvloop, fastapi and
friends differently from sibyl and from each other, so none is installed next to it.
`python -m benchmarks.peers.setup [mlserver] [triton] [kserve] [bentoml] [litserve] [rayserve]` creates (or
reuses) them and prints each venv's python; `python -m benchmarks --with-peers` does the same before a run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

VENV_ROOT = Path(__file__).resolve().parents[2] / ".bench-venvs"  # in the checkout's root
MARKER = "sibyl-peer.json"  # written last: a venv without it is half-installed and gets reinstalled


def requirements() -> dict[str, list[str]]:
    # The peers score with the same onnxruntime release as sibyl, so equal inputs give equal scores.
    ort = f"onnxruntime=={version('onnxruntime')}"
    return {
        # uvloop 0.23 crashes MLServer 1.7's worker pool; 0.21 is the last that works with it.
        "mlserver": ["mlserver==1.7.1", "uvloop==0.21.0", ort, "numpy"],
        # pytriton 0.7.0 bundles tritonserver 2.51 (CPU-only here, Python backend only).
        "triton": ["nvidia-pytriton==0.7.0", ort, "numpy"],
        # The HTTP field (issue 33): each framework at its release of the day, its own venv (their pins clash).
        "kserve": ["kserve==0.21.0", ort, "numpy"],
        "bentoml": ["bentoml==1.4.40", ort, "numpy"],
        "litserve": ["litserve==0.2.19", ort, "numpy"],
        "rayserve": ["ray[serve]==2.60.0", ort, "numpy"],
    }


def venv_dir(peer: str) -> Path:
    return VENV_ROOT / peer


def pins_of(peer: str) -> list[str]:
    """The peer's requirements; ValueError for a name that is not a peer."""
    if peer not in requirements():
        raise ValueError(f"unknown peer {peer!r}; choose from {sorted(requirements())}")
    return requirements()[peer]


def venv_python(peer: str) -> Path | None:
    """The peer venv's python when it is fully installed with today's pins, else None."""
    return installed(venv_dir(peer), pins_of(peer))


def installed(where: Path, pins: list[str]) -> Path | None:
    """The python of the venv at `where` when its marker says these pins were installed, else None."""
    python = where / "bin" / "python"
    try:
        marked = json.loads((where / MARKER).read_text()).get("requirements")
    except (OSError, ValueError):
        return None
    return python if marked == pins and python.exists() else None


def build_venv(where: Path, pins: list[str], timeout_s: float = 900.0) -> Path:
    """Install pins into the venv at `where` (created if absent; a half-installed one is finished, not rebuilt);
    returns its python. With uv (the bench extra brings it) a peer's venv takes seconds from a cold cache, with
    venv + pip a minute or more (the top of benchmarks/README.md). scripts/setup_perf_analyzer.sh calls it too.
    RuntimeError with the installer's output on failure."""
    python = where / "bin" / "python"
    if importlib.util.find_spec("uv") is not None:
        uv = [sys.executable, "-m", "uv"]
        steps = [[*uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(where)]]
        steps.append([*uv, "pip", "install", "--quiet", "--python", str(python), *pins])
    else:
        if not python.exists():
            venv.EnvBuilder(with_pip=True).create(where)
        steps = [[str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"installing {' '.join(pins)} failed in {where}:\n{done.stderr[-2000:]}")
    return python


def ensure_venv(where: Path, pins: list[str], timeout_s: float = 900.0) -> Path:
    """The venv at `where` with these pins, reused when its marker says so, else built and then marked; returns its
    python. The tests' Feast venv is made this way too (tests/features/feast_env.py). Raises RuntimeError with the
    installer's output."""
    python = installed(where, pins)
    if python is not None:
        return python
    (where / MARKER).unlink(missing_ok=True)
    python = build_venv(where, pins, timeout_s)
    (where / MARKER).write_text(json.dumps({"requirements": pins}, indent=2))
    return python


def ensure(peer: str, timeout_s: float = 900.0) -> Path:
    """Create or reuse the peer's venv; returns its python. Raises RuntimeError with the installer's output."""
    return ensure_venv(venv_dir(peer), pins_of(peer), timeout_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.setup", description=__doc__.splitlines()[0])
    parser.add_argument("peers", nargs="*", help=f"which (default: all of {', '.join(requirements())})")
    args = parser.parse_args(argv)
    unknown = [p for p in args.peers if p not in requirements()]
    if unknown:
        print(
            f"benchmarks.peers.setup: error: unknown peer(s) {unknown}; choose from {sorted(requirements())}",
            file=sys.stderr,
        )
        return 2
    for peer in args.peers or list(requirements()):
        print(f"[peers] {peer}: installing {' '.join(requirements()[peer])} (reused when present)", file=sys.stderr)
        try:
            print(ensure(peer))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"benchmarks.peers.setup: error: {peer}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
