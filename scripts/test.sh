#!/usr/bin/env bash
# The one test command: install the project with its test extra, the Debian packages the tests need,
# then lint, format check, type check and the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Debian packages the tests need, installed only when their command is missing (needs root + apt-get).
APT_UPDATED=""
apt_install() {  # apt_install COMMAND PACKAGE WHAT-SKIPS
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        [ -n "$APT_UPDATED" ] || { apt-get update -qq; APT_UPDATED=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    else
        echo "warning: $1 not found and cannot apt-get install $2 (need root + apt-get);" \
            "$3 will skip (or fail when CI=true)" >&2
    fi
}
# Prometheus + promtool for the metrics, alert-rule and dashboard tests.
apt_install promtool prometheus "Prometheus tests"
# curl for the README's HTTP examples (tests/test_readme.py runs every README code block).
apt_install curl curl "README tests"
# Java 17 for the local Spark of the batch-scoring tests (tests/batch/test_spark.py).
apt_install java openjdk-17-jre-headless "Spark tests"
# wrk, the HTTP field's load client (tests/bench/test_wrk.py, tests/bench/test_http_field.py).
apt_install wrk wrk "wrk tests"

# perf_analyzer (Triton's load tool) in its own venv, for the KServe V2 compatibility test.
SIBYL_PERF_ANALYZER="$(bash scripts/setup_perf_analyzer.sh)"
export SIBYL_PERF_ANALYZER

ruff check .
ruff format --check .
mypy  # strict on sibyl/ ([tool.mypy] in pyproject.toml)
# --durations: the CI log shows where the time goes (the suite is kept under ~15 minutes on 2 cores; long
# variants run with --runslow). -rs: the log says why each skipped test skipped (CI=true turns a missing tool
# into a failure; what is left to skip is the slow set).
python -m pytest -q -rs --durations=25 "$@"
