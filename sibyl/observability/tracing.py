"""Optional OpenTelemetry tracing: one span per call and one child span per stage (decode, route, features,
infer, encode), parented on the caller's W3C trace context (`traceparent` / `tracestate` in gRPC metadata or
HTTP headers).

Off by default and free when off: `build()` returns None, the service keeps None and pays one `is None` test per
call; nothing of OpenTelemetry is imported. On (`tracing.enabled`, needs `pip install 'sibyl[tracing]'`), the
stage spans are written after the call from the timestamps the service takes anyway for its stage histograms,
so tracing adds no clock reads or context switches inside the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from sibyl.errors import MissingDependency

TRACE_HEADERS = ("traceparent", "tracestate")


class TracingSettings(BaseModel):
    enabled: bool = Field(
        False, description="OpenTelemetry spans per call and per stage (pip install 'sibyl[tracing]')."
    )
    exporter: Literal["otlp", "console"] = Field(
        "otlp", description="otlp (OTLP/HTTP protobuf to tracing.endpoint) or console (spans as JSON on stdout)."
    )
    endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL; unset: OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318/v1/traces."
    )
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of calls traced when the caller sends no trace context."
    )
    service_name: str = Field("sibyl", description="service.name resource attribute of the spans.")


def carrier(pairs: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """The W3C trace context entries of gRPC metadata or HTTP headers (keys already lower case)."""
    out = {}
    for key, value in pairs or ():
        if key in TRACE_HEADERS:
            out[key] = value.decode() if isinstance(value, bytes) else str(value)
    return out


class Tracing:
    """Writes a call's spans; `provider` is the SDK TracerProvider (tests add span processors to it)."""

    def __init__(self, settings: TracingSettings, exporter: Any = None) -> None:
        try:
            from opentelemetry.propagate import extract
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace import SpanKind, Status, StatusCode
        except ImportError:
            raise MissingDependency("opentelemetry-sdk", "tracing", "tracing.enabled") from None
        self._extract, self._kind, self._status, self._code = extract, SpanKind.SERVER, Status, StatusCode
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        if exporter is None:
            exporter = _exporter(settings)
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("sibyl")

    def record(
        self,
        name: str,
        context: Mapping[str, str] | None,
        attributes: Mapping[str, Any],
        stages: Sequence[tuple[str, float, float]],
        start: float,
        end: float,
        error: BaseException | None = None,
    ) -> None:
        """One call: `start`/`end` and each stage's (name, start, end) are time.perf_counter() readings."""
        offset = time.time_ns() - time.perf_counter_ns()  # perf_counter -> wall clock, for the exporter

        def ns(t: float) -> int:
            return int(t * 1e9) + offset

        parent = self._extract(dict(context)) if context else None
        root = self.tracer.start_span(
            name, context=parent, kind=self._kind, attributes=attributes, start_time=ns(start)
        )
        if root.is_recording():
            from opentelemetry.trace import set_span_in_context

            inside = set_span_in_context(root)
            for stage, s, e in stages:
                self.tracer.start_span(stage, context=inside, start_time=ns(s)).end(end_time=ns(e))
            if error is not None:
                root.set_status(self._status(self._code.ERROR, str(error)))
                root.record_exception(error)
        root.end(end_time=ns(end))

    def close(self) -> None:
        self.provider.shutdown()


def _exporter(settings: TracingSettings) -> Any:
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise MissingDependency("opentelemetry-exporter-otlp-proto-http", "tracing", "tracing.exporter=otlp") from None
    return OTLPSpanExporter(endpoint=settings.endpoint) if settings.endpoint else OTLPSpanExporter()


def build(settings: TracingSettings) -> Tracing | None:
    return Tracing(settings) if settings.enabled else None
