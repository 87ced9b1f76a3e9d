"""Prometheus metrics (metrics: every series sibyl exports, in one place) and JSON-lines logging (logs).

May import (tests/test_layout.py RANK): errors and the generated v1/kserve code only; every package above
imports it.
"""
