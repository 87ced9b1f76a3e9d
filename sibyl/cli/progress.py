"""Progress of long commands (features load, score, python -m benchmarks): a tqdm bar when stderr is a terminal,
plain lines otherwise (at most one every `every_s` seconds, so logs and CI output stay readable).

Messages written while a bar is shown go through `write`, above the bar, instead of breaking it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    def __init__(
        self,
        what: str,
        unit: str = "rows",
        total: int | None = None,
        out: TextIO | None = None,
        every_s: float = 1.0,
        line: Callable[[int, float, str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`line(count, per_second, note)` words a plain line (default: "WHAT: N UNIT (R UNIT/s)")."""
        self.out = out if out is not None else sys.stderr
        self.what, self.unit, self.every_s, self.clock = what, unit, every_s, clock
        self.count, self.start = 0, clock()
        self._next = self.start + every_s
        self._line = line or (lambda n, rate, note: f"{what}: {n:,} {unit} ({rate:,.0f} {unit}/s){note}")
        self.bar: Any = None
        if _is_terminal(self.out):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=f" {unit}", unit_scale=True, file=self.out, leave=True,
                            dynamic_ncols=True)  # fmt: skip

    def update_to(self, count: int, note: str = "") -> None:
        """The work done so far (e.g. rows written); the bar moves, or a plain line is due."""
        step, self.count = count - self.count, count
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(step)
            return
        now = self.clock()
        if now >= self._next:
            self._next = now + self.every_s
            rate = count / max(now - self.start, 1e-9)
            print(self._line(count, rate, f", {note}" if note else ""), file=self.out, flush=True)

    def update(self, step: int = 1, note: str = "") -> None:
        self.update_to(self.count + step, note)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
