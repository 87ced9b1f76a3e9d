"""What the numbers were measured on: CPU, cores, Python, package versions, git commit."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

# What a run's numbers depend on: the serving stack, the log's encoders and compressors, and the peers. A stale
# one shows here (a run once had a stale orjson from a floors check: docs/performance.md#the-box-drifts).
PACKAGES = (
    "sibyl", "grpcio", "protobuf", "onnxruntime", "numpy", "uvloop", "redis", "hiredis", "kafka-python",
    "confluent-kafka", "orjson", "crc32c", "lz4", "xxhash", "prometheus-client", "pydantic",
    "hdrhistogram", "mlserver", "nvidia-pytriton",
)  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> dict[str, object]:
    mem_gib = 0.0
    with contextlib.suppress(ValueError, OSError):
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions(),
        "git_sha": git_sha(),
        # Other work on the machine skews every number: record how busy it was when the run began.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
