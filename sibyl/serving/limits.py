"""The work budget of one request: what a message may ask for, checked before anything proportional is allocated.

Every count a request declares (rows, columns, elements, names, vector widths, V2 shape products) is a Python
int (no int64 overflow), checked against these limits and against the bytes actually present, before the
work or memory it implies. A refusal is InvalidArgument naming the limit, its setting and the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sibyl.errors import InvalidArgument


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    max_models: int = 16
    max_name_length: int = 256
    max_columns: int = 4_096  # feature columns of one request (a vector of width k is k columns)
    max_elements: int = 4_194_304  # rows x columns of the request's matrix (16 MiB of float32)

    def rows(self, n: int, what: str = "rows") -> int:
        if n > self.max_rows:
            raise InvalidArgument(
                f"{n} {what} in one call; at most {self.max_rows} (server.max_rows): split the request"
            )
        return n

    def columns(self, n: int, what: str = "feature columns") -> int:
        if n > self.max_columns:
            raise InvalidArgument(
                f"{n} {what} in one call; at most {self.max_columns} (server.max_columns): send fewer features"
            )
        return n

    def elements(self, rows: int, columns: int, what: str = "values") -> int:
        n = rows * columns
        if n > self.max_elements:
            raise InvalidArgument(
                f"{rows} rows x {columns} columns = {n} {what} in one call; at most {self.max_elements} "
                "(server.max_elements): split the request"
            )
        return n

    def name(self, kind: str, name: str) -> str:
        if not name or len(name) > self.max_name_length:
            raise InvalidArgument(f"{kind} name must be 1-{self.max_name_length} characters, got {len(name)}")
        return name

    def text(self, kind: str, value: str) -> str:
        """An id or other free text: may be empty, not longer than max_name_length."""
        if len(value) > self.max_name_length:
            raise InvalidArgument(f"{kind} is {len(value)} characters; at most {self.max_name_length}")
        return value


def first_duplicate(names: Iterable[str]) -> str | None:
    """The first name seen twice, in one pass (O(n))."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None
