"""Trace context on the wire: W3C Trace Context, B3 and `x-request-id`, read and written.

Every hop of a request (the gateway, a transformer calling its predictor, the broker delivering an
event) continues the caller's trace rather than starting its own, so one request is one trace
whichever of the formats KServe's users have in their meshes it arrived with:

- W3C Trace Context (`traceparent: 00-{trace-id}-{parent-id}-{flags}`, `tracestate` passed on as
  is), what OpenTelemetry speaks and what is always written;
- B3, Zipkin's and Istio's, in its multi-header form (`x-b3-traceid`, `x-b3-spanid`,
  `x-b3-sampled`) or its single header (`b3: {trace}-{span}-{sampled}`); read when no
  `traceparent` came, and written back in the form that came in, so a B3-only service downstream
  keeps its trace (KServe forwards `x-b3-traceid` from a transformer to its predictor);
- `x-request-id`, Envoy's request id: kept when present, made (a UUID4) by the gateway when not.

`TraceContext` is what a hop knows of its caller; `child_headers` is what it sends on, with the
span it is in now as the parent. Nothing here does I/O or knows of spans' export
(`knserve.runtime.tracing` does that); these are pure functions of headers, with `random` ids.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "REQUEST_ID",
    "TRACE_HEADERS",
    "TraceContext",
    "child_headers",
    "extract",
    "new_request_id",
    "new_span_id",
    "new_trace_id",
    "traceparent",
]

REQUEST_ID = "x-request-id"
# Every header that carries trace context; a hop that starts a span replaces them all.
TRACE_HEADERS = frozenset(
    {
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
    }
)
_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_getrandbits = random.getrandbits

B3_NONE, B3_MULTI, B3_SINGLE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The caller's side of a hop: its trace, the span that called, and whether it records."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits: the caller's span, the parent of ours
    sampled: bool = True
    state: str = ""  # W3C tracestate, passed on unchanged
    b3: int = B3_NONE  # which B3 form the caller spoke, to answer downstream in the same


def new_trace_id() -> str:
    return f"{_getrandbits(128) or 1:032x}"  # an all-zero id is invalid


def new_span_id() -> str:
    return f"{_getrandbits(64) or 1:016x}"


def new_request_id() -> str:
    """A random UUID (version 4), the form Envoy gives `x-request-id`."""
    h = f"{_getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and _HEX.issuperset(value)


def parse_traceparent(value: str, state: str = "") -> TraceContext | None:
    """A `traceparent` header's context; None for one that is not version 00's (or future
    versions') shape, or that has an all-zero id (W3C: then start a new trace)."""
    parts = value.strip().lower().split("-")
    if len(parts) < 4 or not _is_hex(parts[0], 2) or parts[0] == "ff":
        return None
    version, trace_id, span_id, flags = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if not (_is_hex(trace_id, 32) and _is_hex(span_id, 16) and _is_hex(flags, 2)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1), state)


def _b3_trace_id(value: str) -> str | None:
    value = value.strip().lower()
    if _is_hex(value, 16):
        value = "0" * 16 + value  # 64-bit B3 ids are the low half of a 128-bit one
    return value if _is_hex(value, 32) and value != _ZERO_TRACE else None


def _b3_sampled(value: str | None) -> bool:
    return value is None or value.strip().lower() in ("1", "true", "d")


def parse_b3_single(value: str) -> TraceContext | None:
    """`b3: {trace}-{span}[-{sampled}[-{parent}]]`; a lone sampling decision carries no context."""
    parts = value.strip().split("-")
    if len(parts) < 2:
        return None
    trace_id = _b3_trace_id(parts[0])
    span_id = parts[1].strip().lower()
    if trace_id is None or not _is_hex(span_id, 16) or span_id == _ZERO_SPAN:
        return None
    sampled = _b3_sampled(parts[2] if len(parts) > 2 else None)
    return TraceContext(trace_id, span_id, sampled, "", B3_SINGLE)


def extract(get: Callable[[str], str | None]) -> TraceContext | None:
    """The caller's context from a request's headers (`get` takes a lowercase name): W3C first,
    then B3's single header, then its multiple ones; None when there is none (or none valid).

    The B3 form is remembered even when `traceparent` wins, so it is written back downstream.
    """
    b3_single = get("b3")
    b3_trace = get("x-b3-traceid")
    b3 = B3_SINGLE if b3_single is not None else (B3_MULTI if b3_trace is not None else B3_NONE)
    value = get("traceparent")
    if value is not None:
        found = parse_traceparent(value, get("tracestate") or "")
        if found is not None:
            return TraceContext(found.trace_id, found.span_id, found.sampled, found.state, b3)
    if b3_single is not None:
        return parse_b3_single(b3_single)
    if b3_trace is not None:
        trace_id = _b3_trace_id(b3_trace)
        span_id = (get("x-b3-spanid") or "").strip().lower()
        if trace_id is None or not _is_hex(span_id, 16) or span_id == _ZERO_SPAN:
            return None
        flags = get("x-b3-flags")
        sampled = flags == "1" or _b3_sampled(get("x-b3-sampled"))
        return TraceContext(trace_id, span_id, sampled, "", B3_MULTI)
    return None


def traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def child_headers(context: TraceContext, span_id: str) -> list[tuple[str, str]]:
    """The headers a hop sends on for a call made from its span `span_id` in `context`'s trace:
    `traceparent` (and `tracestate`), and B3 in the form the caller used, if it used one."""
    headers = [("traceparent", traceparent(context.trace_id, span_id, context.sampled))]
    if context.state:
        headers.append(("tracestate", context.state))
    if context.b3 == B3_SINGLE:
        sampled = "1" if context.sampled else "0"
        headers.append(("b3", f"{context.trace_id}-{span_id}-{sampled}"))
    elif context.b3 == B3_MULTI:
        headers += (
            ("x-b3-traceid", context.trace_id),
            ("x-b3-spanid", span_id),
            ("x-b3-parentspanid", context.span_id),
            ("x-b3-sampled", "1" if context.sampled else "0"),
        )
    return headers
