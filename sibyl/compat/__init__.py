"""Shims over dependencies' private APIs, each a fast path a measurement asked for, next to its fallback.

Every reach into another library's internals lives here, one module per library, importing only that library:
`redis_replies` (redis-py's hiredis parser: a fetch's replies parsed in bulk), `prometheus_buckets`
(prometheus_client's histogram buckets: queued observations applied in bulk) and `onnxruntime_run`
(onnxruntime's C++ session run, without InferenceSession.run's Python checks). Each exposes the function sibyl
calls and a probe that says whether the fast path is taken; tests/compat fails when the installed version no
longer takes it, and checks that the fallback gives the same results. Rank 0: nothing of sibyl is imported here.
"""
