"""The `sibyl` command line: one module per command group, `main` wires them.

The top layer (tests/test_layout.py RANK): may import any sibyl package; only `python -m sibyl` imports it.
"""

from sibyl.cli.main import main

__all__ = ["main"]
