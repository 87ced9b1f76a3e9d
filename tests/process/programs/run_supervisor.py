"""sibyl's `--workers N` supervisor with its settings from the environment (SIBYL_*) and the healthy-run length the
test chooses: `sibyl serve` has no flag for it, and a test cannot wait for the default.

    python run_supervisor.py HEALTHY_AFTER_S
"""

from __future__ import annotations

import sys

from sibyl.config import load_settings
from sibyl.observability.logs import setup_logging
from sibyl.process.workers import Supervisor


def main(healthy_after_s: float) -> int:
    settings = load_settings()
    setup_logging("INFO", False)
    return Supervisor(settings, healthy_after_s=healthy_after_s).run()


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1])))
