"""The `sibyl` command line: one module per command group, `main` wires them."""

from sibyl.cli.main import main

__all__ = ["main"]
