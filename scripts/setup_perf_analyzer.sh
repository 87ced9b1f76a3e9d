#!/usr/bin/env bash
# perf_analyzer (Triton's load tool) in a venv of its own: tritonclient 2.51 is the last wheel whose bundled
# binary runs on this Debian, and it pins protobuf<5 while sibyl needs protobuf 7. Prints the wrapper's path.
# Idempotent: a second run reuses .bench-venvs/perf-analyzer.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.bench-venvs/perf-analyzer
wrapper="$PWD/$venv/perf_analyzer.sh"
if [ ! -x "$wrapper" ]; then
    if ! ldconfig -p 2>/dev/null | grep -q libb64.so.0d; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libb64-0d >/dev/null
        else
            echo "perf_analyzer needs Debian libb64-0d (apt-get install libb64-0d as root)" >&2
            exit 1
        fi
    fi
    # As the peers' venvs are built: uv when the bench extra brought it (~2 s from a cold cache), else pip (~35 s).
    python -c 'import sys; from pathlib import Path; from benchmarks.peers.setup import build_venv
build_venv(Path(sys.argv[1]), sys.argv[2:])' "$venv" "tritonclient[all]==2.51.0" nvidia-cuda-runtime-cu12 >&2
    cudart=$("$venv/bin/python" -c "import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], 'lib'))")
    cat > "$wrapper" <<SH
#!/bin/sh
export LD_LIBRARY_PATH="$cudart:\${LD_LIBRARY_PATH:-}"
exec "$PWD/$venv/bin/perf_analyzer" "\$@"
SH
    chmod +x "$wrapper"
fi
"$wrapper" --version >/dev/null 2>&1 || { echo "perf_analyzer in $venv does not run" >&2; exit 1; }
echo "$wrapper"
