import sys

from benchmarks.cli import run

sys.exit(run())
