"""Every Prometheus metric sibyl exports, in one place, on an injectable registry.

Label vocabulary: predictor, model, version, role, stage, code, outcome, feature. Latency histograms use
seconds with buckets from 100 µs to 5 s so sub-millisecond p50s and multi-second stalls both resolve.
In multiprocess mode (several workers) prometheus_client writes each metric to PROMETHEUS_MULTIPROC_DIR
and the metrics endpoint merges them; gauges say how they merge. Series that go away (a version unloaded) are
removed through observability.multiprocess.drop_series, which the files cannot otherwise forget.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sibyl.observability.deferred import Deferred

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SCORE_BUCKETS = (0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
# Fine enough to tell float noise (1e-6), a retrained twin (1e-4..1e-3) and a different model (0.05+) apart.
DELTA_BUCKETS = (1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        # First in the registry: a scrape applies the request path's queued updates before it collects.
        self.deferred = Deferred(r)

        # Requests
        self.requests = Counter(
            "sibyl_requests",
            "Predict calls by predictor and gRPC status code.",
            ["predictor", "code"],
            registry=r,
        )
        self.request_latency = Histogram(
            "sibyl_request_latency_seconds",
            "Server-side Predict latency, decode to response.",
            ["predictor"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "sibyl_stage_latency_seconds",
            "Latency of one request stage (decode, route, features, infer, encode).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "sibyl_batch_rows", "Feature rows per Predict call.", ["predictor"], buckets=ROW_BUCKETS, registry=r
        )
        self.in_flight = Gauge(
            "sibyl_in_flight_requests", "Predict calls being served.", registry=r, multiprocess_mode="livesum"
        )
        self.rejected = Counter(
            "sibyl_rejected", "Calls refused before any work (overload, limits, auth).", ["reason"], registry=r
        )

        # Features
        self.feature_fetch_latency = Histogram(
            "sibyl_feature_fetch_seconds",
            "Time to fill missing features (cache + store), per request.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feature_defaults = Counter(
            "sibyl_feature_defaults",
            "Feature values that fell back to their default, per feature.",
            ["feature"],
            registry=r,
        )
        self.feature_lookups = Counter(
            "sibyl_feature_lookups",
            "Feature values looked up, by where they were found.",
            ["source"],
            registry=r,
        )  # fmt: skip  source: request | cache | store | default
        self.feature_cache = Counter(
            "sibyl_feature_cache", "In-process feature cache lookups per entity.", ["result"], registry=r
        )
        self.feature_store_errors = Counter(
            "sibyl_feature_store_errors",
            "Feature store failures: timeout, connection, decode.",
            ["kind"],
            registry=r,
        )
        self.feature_circuit_open = Gauge(
            "sibyl_feature_circuit_open",
            "1 while the feature store circuit breaker is open.",
            registry=r,
            multiprocess_mode="max",
        )

        # Models
        self.inference_latency = Histogram(
            "sibyl_inference_seconds",
            "onnxruntime run time per model call.",
            ["model", "version", "role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "sibyl_model_loaded",
            "1 for each model version loaded and serving.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.predictor_info = Gauge(
            "sibyl_predictor_model",
            "1 for each (predictor, model, version, role) in force.",
            ["predictor", "model", "version", "role"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_loads = Counter(
            "sibyl_model_loads", "Model version loads by outcome (ok, failed).", ["model", "outcome"], registry=r
        )
        self.store_errors = Counter(
            "sibyl_model_store_errors", "Failures reading the model store while polling.", registry=r
        )
        self.scores = Histogram(
            "sibyl_prediction_score",
            "Distribution of scores (first output column) by model and role.",
            ["model", "role"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )

        # Shadows
        self.shadows = Counter(
            "sibyl_shadows",
            "Shadow predictions by outcome (run, shed, failed).",
            ["predictor", "outcome"],
            registry=r,
        )

        # Verdicts: shadows and arms against the primary on the same rows, and the primary's own output, by slice
        # (serving.verdicts; docs/observability.md#verdicts). slice is "all" or "<slice name>=<value>".
        self.shadow_abs_delta = Histogram(
            "sibyl_shadow_abs_delta",
            "|candidate score - primary score| per row scored by both.",
            ["predictor", "model", "version", "role", "slice"],
            buckets=DELTA_BUCKETS,
            registry=r,
        )
        self.shadow_decisions = Counter(
            "sibyl_shadow_decisions",
            "Rows scored by a candidate and the primary, by whether their decisions agree (agree, disagree).",
            ["predictor", "model", "version", "role", "slice", "outcome"],
            registry=r,
        )
        self.shadow_rank_agreement = Gauge(
            "sibyl_shadow_rank_agreement",
            "Spearman correlation of candidate and primary scores over the last rows (a sliding window).",
            ["predictor", "model", "version", "slice"],
            registry=r,
            multiprocess_mode="livemin",  # several workers: the worst window shows
        )
        self.decisions = Counter(
            "sibyl_decisions",
            "Rows answered by the primary (or an arm), by decision (positive, negative; class_<i> for dim > 1).",
            ["predictor", "model", "version", "slice", "decision"],
            registry=r,
        )
        self.slice_scores = Histogram(
            "sibyl_slice_score",
            "Scores (first output column) of every row the primary (or an arm) answered, by slice.",
            ["predictor", "model", "version", "slice"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.slice_drift_psi = Gauge(
            "sibyl_slice_drift_psi",
            "PSI vs the manifest baseline of the rows in one slice (the answering model; feature or __prediction__).",
            ["model", "version", "slice", "feature"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.predictor_setting = Gauge(
            "sibyl_predictor_setting",
            "A predictor's alert settings in force (alert_agreement, positive_rate_shift, decision_threshold).",
            ["predictor", "setting"],
            registry=r,
            multiprocess_mode="livemax",
        )

        # Prediction log
        self.predlog_records = Counter(
            "sibyl_predlog_records",
            "Prediction log records by outcome (sent, written, spooled, replayed, trimmed, dead_letter, dropped).",
            ["outcome"],
            registry=r,
        )
        self.predlog_sender_restarts = Counter(
            "sibyl_predlog_sender_restarts",
            "Times a prediction log sender thread failed with an unexpected error and was restarted.",
            registry=r,
        )
        self.predlog_spool_bytes = Gauge(
            "sibyl_predlog_spool_bytes", "Bytes waiting in the disk spool.", registry=r, multiprocess_mode="livesum"
        )
        self.predlog_queue_depth = Gauge(
            "sibyl_predlog_queue_depth",
            "Records waiting in memory for the sink.",
            registry=r,
            multiprocess_mode="livesum",
        )

        # Drift: population stability index of live inputs/predictions vs the manifest baseline
        self.drift_psi = Gauge(
            "sibyl_drift_psi",
            "Population stability index vs the manifest baseline (feature or __prediction__).",
            ["model", "version", "feature"],
            registry=r,
            multiprocess_mode="livemax",
        )

        # Feast online store (features.backend feast-redis): values older than their view's ttl, served as defaults
        self.feature_stale = Counter(
            "sibyl_feature_stale", "Feast feature values older than their view's ttl, per view.", ["view"], registry=r
        )

        # PredictStream: answers scored and not yet written (a client that does not read holds at most the window)
        self.stream_pending = Gauge(
            "sibyl_stream_pending_responses",
            "PredictStream answers scored and not yet written to their client.",
            registry=r,
            multiprocess_mode="livesum",
        )

        # Prediction log records not kept, by why (predlog/losses.py); their total is predlog_records{outcome=dropped}
        self.predlog_dropped = Counter(
            "sibyl_predlog_dropped",
            "Prediction log records not kept, by reason (queue, spool_full, disk_full, write_error, poison).",
            ["reason"],
            registry=r,
        )

        # Outcomes (api/outcomes.py, predlog/outcome_sink.py): reported, refused, and their way to the file or topic
        self.outcomes = Counter(
            "sibyl_outcomes",
            "Outcomes by outcome: accepted, rejected (invalid), refused (no outcome log, or it is full); then as "
            "the prediction log's records: written, sent, spooled, replayed, dead_letter, dropped.",
            ["outcome"],
            registry=r,
        )
        self.outcomes_dropped = Counter(
            "sibyl_outcomes_dropped",
            "Accepted outcomes not kept, by reason (queue, spool_full, disk_full, write_error, poison).",
            ["reason"],
            registry=r,
        )
        self.outcomes_sender_restarts = Counter(
            "sibyl_outcomes_sender_restarts",
            "Times the outcome log's Kafka sender thread failed with an unexpected error and was restarted.",
            registry=r,
        )
        self.outcomes_queue_depth = Gauge(
            "sibyl_outcomes_queue_depth",
            "Outcomes waiting in memory for their sink.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.outcomes_spool_bytes = Gauge(
            "sibyl_outcomes_spool_bytes",
            "Outcome bytes waiting in the disk spool.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.big_requests = Counter(
            "sibyl_big_requests",
            "Predict requests over server.decode_process_bytes, by where they were decoded: process (a decode "
            "process), thread (the pool was starting, or a decode process had died).",
            ["decoded_in"],
            registry=r,
        )
