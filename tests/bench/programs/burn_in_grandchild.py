"""A process tree for the CPU accounting tests: this program starts itself again as a grandchild, which burns
BURN_S of CPU, prints "burned" and sleeps; the child only waits for it.

    python burn_in_grandchild.py BURN_S
"""

from __future__ import annotations

import subprocess
import sys
import time


def burn(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    print("burned", flush=True)
    time.sleep(60)


def main(burn_s: str, role: str = "child") -> None:
    if role == "grandchild":
        burn(float(burn_s))
    else:
        subprocess.Popen([sys.executable, __file__, burn_s, "grandchild"]).wait()


if __name__ == "__main__":
    main(*sys.argv[1:3])
