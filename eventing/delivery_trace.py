"""The trace of one delivery attempt: the event's distributed-tracing extension carried on as
HTTP headers, and, with tracing on, a ``delivery attempt`` span between the event's and the
subscriber's.

The event's ``traceparent``/``tracestate`` attributes (the CloudEvents distributed-tracing
extension the ingress stored) are the parent. With a tracer (OpenTelemetry configured by
``OTEL_*``), each attempt is a client span, a child of the event's, and the subscriber's parent;
without one the subscriber is the event's child directly. The dispatcher calls :func:`begin`
before it sends and :meth:`Attempt.end` with the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knserve.eventing.message_sender import Answer
from knserve.runtime.tracecontext import child_headers, parse_traceparent
from knserve.runtime.tracing import Span, Tracer


class Attempt:
    """One attempt's span (None with tracing off) and the trace headers it sends."""

    __slots__ = ("headers", "span", "tracer")

    def __init__(self, tracer: Tracer | None, span: Span | None, headers: dict[str, str] | None):
        self.tracer, self.span, self.headers = tracer, span, headers

    def end(self, answer: Answer) -> None:
        """Close the span with the subscriber's answer: its status, and failed unless a 2xx."""
        if self.tracer is None or self.span is None:
            return
        if answer.status is not None:
            self.span.set_attribute("http.response.status_code", answer.status)
        if answer.status is None or not 200 <= answer.status < 300:
            self.tracer.fail(self.span, answer.body[:200].decode(errors="replace"))
        self.span.end()


def begin(
    tracer: Tracer | None,
    attributes: Mapping[str, Any],
    trigger: str,
    url: str,
    attempt: int,
) -> Attempt:
    """Start the trace of delivering an event with `attributes` to `url` (the `attempt`-th try)."""
    parent = None
    if "traceparent" in attributes:
        parent = parse_traceparent(
            str(attributes["traceparent"]), str(attributes.get("tracestate", ""))
        )
    if tracer is not None:
        span, context = tracer.start(
            "delivery attempt",
            parent,
            kind="client",
            attributes={"knative.trigger": trigger, "url.full": url, "knserve.attempt": attempt},
        )
        return Attempt(tracer, span, dict(child_headers(context, context.span_id)))
    if parent is not None:
        return Attempt(None, None, dict(child_headers(parent, parent.span_id)))
    return Attempt(None, None, None)
