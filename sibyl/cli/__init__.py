"""The `sibyl` command line: one module per command group, `main` wires them.

main (the parser, `serve` and `predict`), models (`sibyl models ...`: publish, validate, promote, rollback, ...),
shadow_report (`models shadow-report`: the live verdicts from a server's /metrics), monitor (`sibyl monitor`: the
outcome evaluator),
config (`config show`), features (`features load` and `get`), predlog (`predlog tail`), score (`sibyl score`);
flags (every setting as a flag of `serve` and `config show`), remote (the flags and client of commands that call
a running server), progress (the progress of long commands).

The top layer (tests/test_layout.py RANK): may import any sibyl package; only `python -m sibyl` imports it.
"""

from sibyl.cli.main import main

__all__ = ["main"]
