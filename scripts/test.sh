#!/usr/bin/env bash
# The one test command: install the project with its test extra, the Debian packages the tests need,
# then lint, format check and the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Prometheus + promtool (Debian package) for the metrics, alert-rule and dashboard tests.
if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        echo "warning: promtool not found and cannot apt-get install prometheus (need root + apt-get);" \
            "Prometheus tests will skip (or fail when CI=true)" >&2
    fi
fi

# perf_analyzer (Triton's load tool) in its own venv, for the KServe V2 compatibility test.
SIBYL_PERF_ANALYZER="$(bash scripts/setup_perf_analyzer.sh)"
export SIBYL_PERF_ANALYZER

ruff check .
ruff format --check .
python -m pytest -q "$@"
