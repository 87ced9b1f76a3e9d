"""One settings object for the whole server: env vars SIBYL_* (nested with __) and/or a TOML/JSON file.

Each backend's settings live beside the backend (features/, models/, predlog/, serving/); this module composes
them with the server-wide ones.

Examples: SIBYL_SERVER__PORT=50051, SIBYL_MODEL_STORE__URL=s3://models/prod,
SIBYL_FEATURES__BACKEND=redis, SIBYL_PREDLOG__SINK=kafka. Validated once at start-up; `load_settings`
turns validation errors into one ConfigError line that names the setting.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sibyl.errors import ConfigError
from sibyl.features.settings import EXAMPLE_FEATURES, FeatureSettings
from sibyl.models.settings import EXAMPLE_STORE, ModelStoreSettings
from sibyl.observability.tracing import TracingSettings
from sibyl.predlog.settings import PredlogSettings
from sibyl.serving.shadow_settings import ShadowSettings


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the gRPC server binds to.")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free port and prints it.")
    workers: int = Field(1, ge=0, description="Worker processes sharing the port; 0 means one per core.")
    max_rows: int = Field(10_000, ge=1, description="Most feature rows one Predict may carry.")
    max_columns: int = Field(
        4_096,
        ge=1,
        description="Most feature columns one request may carry (a vector of width k is k columns); also the most "
        "entity columns, context entities and V2 input tensors.",
    )
    max_elements: int = Field(
        4_194_304,
        ge=1,
        description="Most rows x columns one request may carry (its float32 matrix: 16 MiB at the default); "
        "checked before the matrix is allocated.",
    )
    decode_offload_bytes: int = Field(
        65_536,
        ge=0,
        description="Requests larger than this (bytes) are parsed, in 64 KiB pieces, and decoded in a worker "
        "thread, so one large request cannot stall health checks or small calls; smaller ones are decoded inline.",
    )
    decode_process_bytes: int = Field(
        262_144,
        ge=0,
        description="Predict requests larger than this (bytes) are parsed and decoded in a decode process "
        "(server.decode_processes), not a thread, so their Python work cannot hold the serving thread's GIL and "
        "small calls keep their latency while big ones run (docs/performance.md#big-requests-and-the-tail).",
    )
    decode_processes: int = Field(
        1,
        ge=0,
        description="Processes per server worker that decode big Predict requests (server.decode_process_bytes), "
        "started on the first one (until then, and if one dies, big requests decode in a thread); 0 = always in a "
        "thread.",
    )
    max_models: int = Field(16, ge=1, description="Most models (primary + extras) one Predict may score.")
    max_message_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest gRPC message accepted (both services; larger: RESOURCE_EXHAUSTED). gRPC's own receive "
        "holds the event loop ~2-5 ms per MB, so past ~32 MiB one message delays health checks beyond 100 ms.",
    )
    max_name_length: int = Field(256, ge=8, description="Longest predictor/model/feature/entity name.")
    max_in_flight: int = Field(512, ge=1, description="Concurrent calls per process before RESOURCE_EXHAUSTED.")
    grace_s: float = Field(10.0, ge=0, description="Seconds in-flight calls get to finish on SIGTERM.")
    drain_s: float = Field(
        1.0,
        ge=0,
        description="On SIGTERM, seconds the server still answers while its health and readiness say NOT_SERVING, so "
        "clients and balancers move before any call is refused (docs/deploy.md#graceful-shutdown).",
    )
    inference_threads: int = Field(
        0,
        ge=0,
        description="onnxruntime intra-op threads for batches of 1,000 rows or more (smaller batches use one "
        "thread; no pool spins); 0 = cores / workers, 1 = one thread for every batch.",
    )
    gil_switch_ms: float = Field(
        1.0,
        gt=0,
        description="Python's GIL switch interval. Below the 5 ms default, the event loop waits less for the GIL "
        "while log/Kafka threads run, which shortens the latency tail.",
    )
    gil_slice_ms: float = Field(
        0.0,
        ge=0,
        description="After-response threads (log writers, records lane, shadows, verdict flusher) give the GIL back "
        "after this much work, so a call that arrives waits about this long for it at most; 0 = off. 0.2 cuts "
        "1-row p99 at low concurrency and costs throughput at high (docs/performance.md#gil-pacing).",
    )
    gil_defer_ms: float = Field(
        2.0,
        ge=0,
        description="While calls are in flight, an after-response thread waits up to this long for the event loop "
        "to go idle before its next slice of work (never once its queue is half full); 0 = never wait.",
    )
    offload_rows: int = Field(
        512, ge=1, description="Batches with at least this many rows run inference in a thread, not the loop."
    )
    followup_inline_rows: int = Field(
        128,
        ge=0,
        description="Calls of at most this many rows run their after-response work (metrics, drift, verdicts, the "
        "log record) on the event loop right after the response instead of on the records thread, so no later "
        "call waits for that thread's batch; 0 = always the thread (docs/performance.md#follow-ups-on-the-loop).",
    )


class MetricsSettings(BaseModel):
    enabled: bool = Field(True, description="Serve Prometheus /metrics over HTTP.")
    port: int = Field(9100, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 picks a free port.")
    host: str = Field("127.0.0.1", description="Address the metrics server binds to.")
    drift_sample: float = Field(
        0.1, ge=0, le=1, description="Share of calls whose inputs and scores feed the drift (PSI) histograms."
    )
    verdicts: bool = Field(
        True, description="Compare shadows and arms with the primary and count decisions, by slice (the verdicts)."
    )
    multiprocess_dir: str | None = Field(None, description="prometheus multiprocess dir (set by --workers).")


class HttpSettings(BaseModel):
    enabled: bool = Field(
        True, description="Serve the KServe V2 REST API (/v2/...) beside gRPC, in the same process (uvicorn)."
    )
    port: int = Field(8080, ge=0, le=65535, description="KServe V2 REST port; 0 picks a free port and prints it.")
    host: str | None = Field(None, description="Address the REST server binds to; unset: the gRPC host.")
    keep_alive_s: float = Field(
        75.0,
        gt=0,
        description="Idle seconds before the server closes a keep-alive connection; keep it above any load "
        "balancer's idle timeout (60 s on many), or the balancer reuses a closed connection and answers 502.",
    )


class SecuritySettings(BaseModel):
    tls_cert: str | None = Field(None, description="PEM server certificate; enables TLS.")
    tls_key: str | None = Field(None, description="PEM private key for tls_cert.")
    tls_client_ca: str | None = Field(None, description="PEM CA bundle; enables mutual TLS.")
    tokens: list[str] = Field(default_factory=list, description="Accepted bearer tokens.")
    tokens_file: str | None = Field(None, description="File with one accepted bearer token per line.")


class MonitorSettings(BaseModel):
    """`sibyl monitor`: the evaluator joining outcomes to predictions (docs/monitoring.md)."""

    state_dir: str = Field("monitor", description="Join state and quality statistics, one SQLite file per partition.")
    window_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="How long a prediction waits for its outcome; older rows are forgotten."
    )
    max_state_bytes: int = Field(
        1024**3, ge=1024**2, description="Join state bound per partition; past it the oldest rows are evicted."
    )
    group: str = Field("sibyl-monitor", description="Kafka consumer group of the monitor instances.")
    session_timeout_ms: int = Field(
        10_000, ge=1_000, description="Kafka group session: how soon a dead instance's partitions move to another."
    )
    metrics_port: int = Field(9101, ge=0, le=65535, description="The monitor's Prometheus /metrics port.")
    metrics_host: str = Field("127.0.0.1", description="Address the monitor's metrics server binds to.")
    min_rows: int = Field(200, ge=1, description="Labelled rows a comparison needs before it gives a verdict.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIBYL_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    model_store: ModelStoreSettings = Field(default_factory=ModelStoreSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    predlog: PredlogSettings = Field(default_factory=PredlogSettings)
    shadows: ShadowSettings = Field(default_factory=ShadowSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    log_level: str = Field("INFO", description="Python log level.")
    log_json: bool = Field(True, description="Structured JSON logs.")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:] or 'json'}: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """File values, then env vars (SIBYL_*), then explicit overrides (e.g. CLI flags) win."""
    try:
        from_env = Settings().model_dump(exclude_unset=True)
        data = _merge(_read_file(Path(path)) if path else {}, from_env)
        return Settings.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        env = "SIBYL_" + "__".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(f"setting {where} ({env}): {err['msg']}") from None


__all__ = [
    "EXAMPLE_FEATURES",
    "EXAMPLE_STORE",
    "FeatureSettings",
    "HttpSettings",
    "MetricsSettings",
    "ModelStoreSettings",
    "PredlogSettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "ShadowSettings",
    "TracingSettings",
    "load_settings",
]
