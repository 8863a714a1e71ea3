"""Spans, by the OpenTelemetry SDK when the standard `OTEL_*` variables ask for them.

Tracing is off unless configured, as OpenTelemetry's SDKs are: on when `OTEL_TRACES_EXPORTER`
names an exporter (`otlp`, `console`) or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); off with `OTEL_TRACES_EXPORTER=none` or
`OTEL_SDK_DISABLED=true`. Off, nothing of OpenTelemetry is imported and `tracer()` is None: every
call site pays one `is None` test. On, spans go through a `BatchSpanProcessor` (export on a
thread, never on the request path) to the OTLP/HTTP exporter, which reads its endpoint, headers
and timeout from the same variables; `OTEL_SERVICE_NAME` names the service (else the process's
own default, e.g. `knserve-gateway` or the revision's service), `OTEL_TRACES_SAMPLER` samples.

Spans are made with explicit parents (`TraceContext`, the caller's side) and, where the work was
timed already, explicit start and end times, so the hot paths keep their plain clocks and no
span is ever a context manager around an `await`. `Tracer.start` returns the span and the
`TraceContext` of its children, for the headers of the calls it makes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from knserve.runtime.tracecontext import TraceContext, traceparent

__all__ = [
    "Tracer",
    "configured",
    "flush_all",
    "new_tracer",
    "perf_ns",
    "runtime_service",
    "tracer",
]

log = logging.getLogger(__name__)

_UNSET: Any = object()
_tracers: dict[str, Tracer | None] = {}
# Wall-clock nanoseconds at perf_counter() == 0: spans take times from the clock the hot path
# already read (perf_counter), converted with one addition.
_EPOCH_OFFSET_NS = time.time_ns() - time.perf_counter_ns()


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the `OTEL_*` variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def tracer(default_service: str) -> Tracer | None:
    """This process's tracer (one per default service name), or None when tracing is off or the
    SDK is not installed (said once, with what to install)."""
    found = _tracers.get(default_service, _UNSET)
    if found is _UNSET:
        found = _tracers[default_service] = new_tracer(default_service) if configured() else None
    return found


def flush_all() -> None:
    """Export the finished spans of every tracer this process made (before it stops)."""
    for found in _tracers.values():
        if found is not None:
            found.flush()


def runtime_service() -> str:
    """A model server's default service name: its Knative Service's (`K_SERVICE`)."""
    return os.environ.get("K_SERVICE") or "knserve-runtime"


def perf_ns(seconds: float) -> int:
    """Wall-clock nanoseconds of a `time.perf_counter()` reading."""
    return _EPOCH_OFFSET_NS + int(seconds * 1e9)


def new_tracer(default_service: str) -> Tracer | None:
    """A tracer exporting as the `OTEL_*` variables say now (`tracer` keeps one per process);
    None when the SDK is not installed."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_* variables ask for traces but the OpenTelemetry SDK is not installed; "
            "install it with `pip install 'knserve[otel]'` (tracing stays off)"
        )
        return None
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")]
    attributes: dict[str, Any] = {SERVICE_NAME: default_service}
    for env, key in (
        ("K_SERVICE", "knative.service"),
        ("K_REVISION", "knative.revision"),
        ("POD_NAMESPACE", "k8s.namespace.name"),
        ("POD_NAME", "service.instance.id"),
    ):
        if os.environ.get(env):
            attributes[key] = os.environ[env]
    # Resource.create lets OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override these.
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)  # user code's own spans join the same traces
    return Tracer(provider)


def _exporter(name: str) -> Any:
    if name in ("otlp", ""):
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        if protocol and protocol != "http/protobuf":
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=%s: knserve exports OTLP over HTTP (http/protobuf) "
                "only; point the endpoint at the collector's HTTP port (4318)",
                protocol,
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "none":
        log.warning("OTEL_TRACES_EXPORTER=%s is not one knserve has (otlp, console, none)", name)
    return None


class Tracer:
    """Spans with explicit parents and times, over one SDK `TracerProvider`."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer("knserve")
        self._propagator = TraceContextTextMapPropagator()
        self._set_span = trace.set_span_in_context
        self._kinds = {
            "server": trace.SpanKind.SERVER,
            "client": trace.SpanKind.CLIENT,
            "internal": trace.SpanKind.INTERNAL,
            "producer": trace.SpanKind.PRODUCER,
            "consumer": trace.SpanKind.CONSUMER,
        }

    def start(
        self,
        name: str,
        parent: TraceContext | None,
        *,
        kind: str = "internal",
        start_ns: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> tuple[Any, TraceContext]:
        """Start a span under `parent` (a new trace when None); returns it and the context its
        own calls carry (the span's ids, the parent's tracestate and B3 form)."""
        context = None
        if parent is not None:
            carrier = {"traceparent": traceparent(parent.trace_id, parent.span_id, parent.sampled)}
            if parent.state:
                carrier["tracestate"] = parent.state
            context = self._propagator.extract(carrier)
        span = self._tracer.start_span(
            name, context, self._kinds[kind], attributes, start_time=start_ns
        )
        ids = span.get_span_context()
        child = TraceContext(
            f"{ids.trace_id:032x}",
            f"{ids.span_id:016x}",
            bool(ids.trace_flags & 1),
            parent.state if parent is not None else "",
            parent.b3 if parent is not None else 0,
        )
        return span, child

    def record(
        self,
        name: str,
        parent: TraceContext,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """A finished span: work timed already, from `start_ns` to `end_ns`."""
        span, _ = self.start(name, parent, start_ns=start_ns, attributes=attributes)
        span.end(end_time=end_ns)

    @staticmethod
    def fail(span: Any, message: str) -> None:
        """Mark `span` as failed (an error status with `message`)."""
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, message))

    def flush(self, timeout_ms: int = 5000) -> None:
        """Export every finished span now (before a process exits)."""
        self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        self.provider.shutdown()
