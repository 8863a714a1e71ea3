"""What the gateway tells about a request: its id, its trace, its spans and its access-log line.

Every request leaves the gateway with an `x-request-id` (the client's, or a UUID4 the gateway
makes, as Envoy does in front of Knative) and a trace context: the client's W3C `traceparent`
(or its B3 headers) continued, or a new trace started. The id also goes back to the client on the
response, so a user can quote it (and find it in the logs).

Off (no `OTEL_*` configuration and no access log), this costs the proxy one set lookup per header
and, for a request without an id or a trace, two random numbers: nothing is allocated per request
beyond the header bytes. With tracing on (`knserve.runtime.tracing`), each request gets a `route`
server span under the client's context, and its forwarded trace headers name that span as the
parent; a request that waited for a replica slot gets a `queue wait` span, and one that waited
for a revision to scale from zero an `activation` span (the cold start, from arrival to the
replica it was sent to). With the access log on, each finished request is one line on the
`knserve.access` logger: method, host, path, status, bytes, duration, revision, replica and request
id (fields of the record too, for the JSON log format).
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

from knserve.runtime.tracecontext import (
    REQUEST_ID,
    TRACE_HEADERS,
    TraceContext,
    child_headers,
    extract,
    new_request_id,
    new_span_id,
    new_trace_id,
)

if TYPE_CHECKING:
    from knserve.knative.activator.exchange import Exchange
    from knserve.runtime.tracing import Tracer

access_log = logging.getLogger("knserve.access")

# The header names (lowercase bytes) the proxy hands to `Telemetry.forward` instead of passing on.
FORWARDED = frozenset(name.encode() for name in (*TRACE_HEADERS, REQUEST_ID))
_REQUEST_ID = REQUEST_ID.encode()
_TRACEPARENT = b"traceparent"
_getrandbits = random.getrandbits
# A UUID4 request id and a traceparent whose trace id is the same 128 random bits (its
# version and variant digits aside), the parent id the next 64.
_W3C, _SAMPLED = b"\r\ntraceparent: 00-", b"-01\r\n"
_VARIANT = {
    ord(digit): b"89ab"[int(digit, 16) & 3 : (int(digit, 16) & 3) + 1]
    for digit in "0123456789abcdef"
}


class RequestRecord:
    """One request's span and access-log fields, while it goes through the gateway."""

    __slots__ = (
        "activation",
        "context",
        "queued_at",
        "sent",
        "span",
        "started",
        "status",
    )

    def __init__(self, span: Any, context: TraceContext | None) -> None:
        self.span = span  # the route span (None when only the access log is on)
        self.context = context  # the route span's own context: its children's parent
        self.started = time.time_ns()
        self.queued_at = 0  # when it began to wait for a replica, 0 if it never did
        self.activation = False  # it waited for a revision at zero to get a ready replica
        self.status = 0
        self.sent = 0  # response body bytes


class Telemetry:
    """Request ids, trace headers, spans and the access log for one gateway."""

    def __init__(self, tracer: Tracer | None = None, access_log: bool = False) -> None:
        self.tracer = tracer
        self.access_log = access_log
        self.recording = tracer is not None or access_log

    def forward(self, exchange: Exchange, found: list[tuple[bytes, bytes]]) -> bytes:
        """The id and trace header lines to forward for `exchange`, given the ones the client sent
        (`found`); sets its `request_id` and, when recording, its `record`."""
        if not found and not self.recording:
            # The common case, in one formatting: a new id and a new trace from one random number.
            h = _getrandbits(192).to_bytes(24, "big").hex().encode()
            request_id = b"-".join((h[:8], h[8:12], b"4" + h[13:16], _VARIANT[h[16]] + h[17:20]))
            exchange.request_id = request_id = request_id + b"-" + h[20:32]
            return b"".join((b"x-request-id: ", request_id, _W3C, h[:32], b"-", h[32:], _SAMPLED))
        request_id = b""
        traced = False
        for name, value in found:
            if name == _REQUEST_ID:
                request_id = value
            elif name == _TRACEPARENT or name[:2] == b"x-" or name == b"b3":
                traced = True
        if not request_id:
            request_id = new_request_id().encode()
        exchange.request_id = request_id
        if self.tracer is None:
            lines = [b"x-request-id: ", request_id, b"\r\n"]
            context = None
            if traced:
                # No span of ours: the client's context goes on unchanged, and B3 alone is also
                # written as W3C, the format the replicas read first.
                has_w3c = False
                for name, value in found:
                    if name != _REQUEST_ID:
                        lines += (name, b": ", value, b"\r\n")
                        has_w3c = has_w3c or name == _TRACEPARENT
                context = None if has_w3c else _context_of(found)
                if context is not None:
                    lines += (b"traceparent: ", _w3c(context, context.span_id), b"\r\n")
            else:
                trace_id = new_trace_id()
                lines += (b"traceparent: 00-", trace_id.encode(), b"-", new_span_id().encode())
                lines.append(b"-01\r\n")
                if self.access_log:
                    context = TraceContext(trace_id, "")
            if self.access_log:
                if traced and context is None:
                    context = _context_of(found)
                exchange.record = RequestRecord(None, context)
            return b"".join(lines)
        parent = _context_of(found) if traced else None
        host = exchange.host.decode("latin-1")
        span, context = self.tracer.start(
            "route",
            parent,
            kind="server",
            attributes={"server.address": host, "knserve.request_id": request_id.decode()},
        )
        exchange.record = RequestRecord(span, context)
        lines = [b"x-request-id: ", request_id, b"\r\n"]
        for header, text in child_headers(context, context.span_id):
            lines += (header.encode(), b": ", text.encode("latin-1"), b"\r\n")
        return b"".join(lines)

    # -- the throttler's news ------------------------------------------------------------------
    @staticmethod
    def queued(record: RequestRecord, cold: bool) -> None:
        """The request waits for a replica slot, or (`cold`) for a replica at all."""
        if not record.queued_at:
            record.queued_at = time.time_ns()
        record.activation = record.activation or cold

    def assigned(self, record: RequestRecord, namespace: str, revision: str) -> None:
        """The request goes to a replica now: its wait (if any) is over."""
        if not record.queued_at or self.tracer is None or record.context is None:
            record.queued_at = 0
            return
        now = time.time_ns()
        attributes = {"knative.namespace": namespace, "knative.revision": revision}
        self.tracer.record("queue wait", record.context, record.queued_at, now, attributes)
        if record.activation:
            # The cold start: from arrival until a replica of the revision took the request.
            self.tracer.record("activation", record.context, record.started, now, attributes)
        record.queued_at = 0
        record.activation = False

    def finished(self, exchange: Exchange) -> None:
        """The exchange is over: end its span and write its access-log line."""
        record: RequestRecord = exchange.record
        exchange.record = None
        revision = exchange.revision
        replica = exchange.replica
        where = f"{revision.namespace}/{revision.name}" if revision is not None else ""
        endpoint = replica.endpoint if replica is not None else ""
        status = record.status
        span = record.span
        if span is not None and self.tracer is not None:
            if revision is not None:
                span.set_attribute("knative.namespace", revision.namespace)
                span.set_attribute("knative.revision", revision.name)
            if endpoint:
                span.set_attribute("knserve.replica", endpoint)
            if status:
                span.set_attribute("http.response.status_code", status)
            if not status or status >= 500:
                self.tracer.fail(span, f"status {status}" if status else "no response")
            span.end()
        if self.access_log:
            self._write(exchange, record, where, endpoint)

    @staticmethod
    def _write(exchange: Exchange, record: RequestRecord, revision: str, replica: str) -> None:
        method, _, rest = exchange.head.partition(b" ")
        path = rest.partition(b" ")[0].decode("latin-1")
        host = exchange.host.decode("latin-1")
        duration_ms = (time.time_ns() - record.started) / 1e6
        request_id = exchange.request_id.decode("latin-1")
        access_log.info(
            "%s %s%s %d %d %.1fms revision=%s replica=%s request_id=%s",
            method.decode("latin-1"),
            host,
            path,
            record.status,
            record.sent,
            duration_ms,
            revision or "-",
            replica or "-",
            request_id,
            extra={
                "method": method.decode("latin-1"),
                "host": host,
                "path": path,
                "status": record.status,
                "bytes": record.sent,
                "duration_ms": round(duration_ms, 3),
                "revision": revision,
                "replica": replica,
                "request_id": request_id,
                "trace_id": record.context.trace_id if record.context is not None else None,
            },
        )


def _context_of(found: list[tuple[bytes, bytes]]) -> TraceContext | None:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in found}
    return extract(headers.get)


def _w3c(context: TraceContext, span_id: str) -> bytes:
    return child_headers(context, span_id)[0][1].encode()
