"""The request a model server is answering, as a context variable, and the headers its own calls
carry on (`propagation_headers`).

The server enters an `Inbound` for each inference request before the model's hooks run; whatever
runs inside the request (the hooks, on the loop or on the model's threads, and the logging
formatter) reads it back with `current()`. A transformer's call to its predictor then continues
the request's trace and keeps its `x-request-id`, as KServe's transformers forward them:

    from knserve.runtime.propagation import propagation_headers

    async def predict(self, payload, headers=None):
        return await client.post(url, json=payload, headers=propagation_headers())

Entering costs one small object and one `ContextVar.set`; the trace context is parsed only when
someone asks for it.
"""

from __future__ import annotations

from contextvars import ContextVar

from knserve.runtime.tracecontext import REQUEST_ID, TraceContext, child_headers, extract

__all__ = ["Inbound", "current", "enter", "propagation_headers"]


class Inbound:
    """One request being served: its headers (lowercase names), its model, and the span the
    server opened for it (`span`, when tracing is on) that the model's calls are children of."""

    __slots__ = ("_context", "_parsed", "headers", "model", "span")

    def __init__(self, headers: dict[str, str], model: str) -> None:
        self.headers = headers
        self.model = model
        self.span: TraceContext | None = None
        self._context: TraceContext | None = None
        self._parsed = False

    @property
    def context(self) -> TraceContext | None:
        """The caller's trace context: the HTTP headers', else the event's distributed-tracing
        extension (`ce-traceparent`) for a CloudEvent that came without them."""
        if not self._parsed:
            self._parsed = True
            get = self.headers.get
            found = extract(get)
            if found is None and "ce-traceparent" in self.headers:
                found = extract(lambda name: get("ce-" + name))
            self._context = found
        return self._context

    @property
    def request_id(self) -> str | None:
        return self.headers.get(REQUEST_ID)

    @property
    def trace_id(self) -> str | None:
        context = self.span or self.context
        return context.trace_id if context is not None else None


_INBOUND: ContextVar[Inbound | None] = ContextVar("knserve_inbound", default=None)


def enter(headers: dict[str, str], model: str) -> Inbound:
    """Make a request the current one (for the rest of this task's context)."""
    inbound = Inbound(headers, model)
    _INBOUND.set(inbound)
    return inbound


def current() -> Inbound | None:
    """The request being served here, if any."""
    return _INBOUND.get()


def propagation_headers() -> dict[str, str]:
    """The headers a call made while serving the current request carries on: its trace context
    (the server's span as the parent when tracing is on, else the caller's context unchanged), in
    the formats it came in, and its `x-request-id`. Empty outside a request."""
    inbound = _INBOUND.get()
    if inbound is None:
        return {}
    headers: dict[str, str] = {}
    context = inbound.span or inbound.context
    if context is not None:
        headers.update(child_headers(context, context.span_id))
    request_id = inbound.request_id
    if request_id:
        headers[REQUEST_ID] = request_id
    return headers
