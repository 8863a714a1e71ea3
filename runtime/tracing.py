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
import random
import time
from collections.abc import Mapping
from typing import Any

from knserve.runtime.tracecontext import TraceContext

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
_getrandbits = random.getrandbits
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
    processors = []
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            processors.append(BatchSpanProcessor(exporter))
            provider.add_span_processor(processors[-1])
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)  # user code's own spans join the same traces
    return Tracer(provider, processors)


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


class Span:
    """A span being timed: ended once, exported then (when its trace is sampled)."""

    __slots__ = (
        "attributes",
        "kind",
        "name",
        "parent_span",
        "sampled",
        "span_id",
        "start_ns",
        "state",
        "status",
        "trace_id",
        "tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        kind: str,
        trace_id: int,
        span_id: int,
        parent_span: int,
        sampled: bool,
        state: str,
        start_ns: int,
        attributes: dict[str, Any],
    ) -> None:
        self.tracer = tracer
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span = parent_span  # 0: a root span
        self.sampled = sampled
        self.state = state
        self.start_ns = start_ns
        self.attributes = attributes
        self.status: Any = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def end(self, end_time: int | None = None) -> None:
        if self.sampled:
            self.tracer.export(self, end_time or time.time_ns())


class Tracer:
    """Spans with explicit parents and times, handed to the SDK's span processors when they end.

    A span is built as the SDK's `ReadableSpan` once, at its end, rather than through the SDK's
    `Tracer.start_span` (context objects, a sampler call and attribute copies per span): the same
    export at about a sixth of the CPU, which the request path pays. A trace's first span asks the
    provider's sampler (`OTEL_TRACES_SAMPLER`); the others follow their parent's decision, as
    the default `parentbased_always_on` does.
    """

    def __init__(self, provider: Any, processors: list[Any]) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace.status import Status, StatusCode

        self.provider = provider
        self.processors = processors
        self._readable = ReadableSpan
        self._span_context = trace.SpanContext
        self._flags = (trace.TraceFlags(0), trace.TraceFlags(1))
        self._scope = InstrumentationScope("knserve")
        self._error = (Status, StatusCode.ERROR)
        self._unset = Status()
        self._trace_state = trace.TraceState
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
    ) -> tuple[Span, TraceContext]:
        """Start a span under `parent` (a new trace when None); returns it and the context its
        own calls carry (the span's ids, the parent's tracestate and B3 form)."""
        span_id = _getrandbits(64) or 1
        if parent is None:
            trace_id = _getrandbits(128) or 1
            sampled = self._sample(trace_id, name, kind)
            trace_hex, parent_span, state, b3 = f"{trace_id:032x}", 0, "", 0
        else:
            trace_hex, state, b3 = parent.trace_id, parent.state, parent.b3
            trace_id, parent_span = int(trace_hex, 16), int(parent.span_id, 16)
            sampled = parent.sampled
        span = Span(
            self,
            name,
            kind,
            trace_id,
            span_id,
            parent_span,
            sampled,
            state,
            start_ns or time.time_ns(),
            dict(attributes) if attributes else {},
        )
        return span, TraceContext(trace_hex, f"{span_id:016x}", sampled, state, b3)

    def _sample(self, trace_id: int, name: str, kind: str) -> bool:
        result = self.provider.sampler.should_sample(None, trace_id, name, self._kinds[kind])
        return bool(result.decision.is_sampled())

    def export(self, span: Span, end_ns: int) -> None:
        """Hand an ended span to the processors (the batch exporter's queue)."""
        flags = self._flags[1]
        trace_state = self._trace_state.from_header([span.state]) if span.state else None
        context = self._span_context(span.trace_id, span.span_id, False, flags, trace_state)
        parent = (
            self._span_context(span.trace_id, span.parent_span, True, flags)
            if span.parent_span
            else None
        )
        readable = self._readable(
            span.name,
            context,
            parent,
            self.provider.resource,
            span.attributes,
            kind=self._kinds[span.kind],
            status=span.status or self._unset,
            start_time=span.start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )
        for processor in self.processors:
            processor.on_end(readable)

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
        span.end(end_ns)

    def fail(self, span: Span, message: str) -> None:
        """Mark `span` as failed (an error status with `message`)."""
        status, error = self._error
        span.status = status(error, message)

    def flush(self, timeout_ms: int = 5000) -> None:
        """Export every finished span now (before a process exits)."""
        self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        self.provider.shutdown()
