"""Generated code for sibyl's own protocol, prediction log record and outcomes (protos/sibyl/v1/*.proto): regenerate
with `python scripts/gen_protos.py`, never edit by hand.

The bottom layer (tests/test_layout.py RANK 0): imports nothing of sibyl.
"""
