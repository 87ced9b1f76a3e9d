"""Prometheus metrics (metrics: every series sibyl exports, in one place), per-call metric updates queued off the
request path (deferred), gauges that come and go across worker processes (multiprocess), JSON-lines logging (logs),
CPU seconds per thread read at scrape time (thread_cpu) and optional OpenTelemetry tracing (tracing).

May import (tests/test_layout.py RANK): errors and the generated v1/kserve code only; every package above
imports it.
"""
