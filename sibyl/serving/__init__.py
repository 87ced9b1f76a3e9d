"""The request path, transport-free: decode a PredictRequest (decode; a big one in a process: decode_pool) within
its work budget (limits), route it
(routing), plan and fill the features (assembly; a few rows' gathers keep the GIL: few_rows), score and log
(service, records), with what a scored call
produced before any protocol's message (answer); after the response, on threads (after_response's lanes), what a
scored call leaves: score and drift metrics, log records and shadows (followup), metric flushes and spans; the
verdicts on live traffic (verdicts: each candidate against the primary and the primary's output, by slice), the
slice each row falls in (slices), a call's rows as they wait for their slices (slice_rows) and rank agreement over
a sliding window (rank_window); readiness, model metadata and statistics (metadata); shadow settings (shadow_settings). PredictionService is what every API calls.

May import (tests/test_layout.py RANK): features, predlog, models, observability, errors and the generated
v1/kserve code; never config, app, api, process or cli (they build the service and call it).
"""
