"""The router's HTTP face: every POST runs the graph from its root node, as KServe's router.

KServe's router (`cmd/router`) serves `/` for any path and method and `/readyz` for the
readiness probe; it answers with the last step's body and status (`Content-Type:
application/json` when the body is JSON), or with `{"error": "Failed to process request",
"cause": …}` and the `RoutingError`'s status. Each step is a POST of the node's input to the
step's `serviceUrl` with the request's headers that match a `PROPAGATE_HEADERS` pattern
(comma-separated regular expressions, as the router's config map sets them) and `Content-Type:
application/json` unless one was propagated. `routerTimeouts.serviceClient` bounds each call
(none by default, as Go's default client).

On the local plane the router runs as a revision with `HTTP_PROXY` pointing at the gateway, so a
step URL such as `http://sklearn-iris.default.svc.cluster.local/v1/models/sklearn-iris:predict`
reaches the InferenceService through the gateway as it would through cluster DNS.

With `K_SINK` set (an async graph, `knative.router.chain`), a request starts a chain through the
broker and is answered 202, and a `step` event delivered by a Trigger runs one root step.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from knserve.knative.router import chain
from knserve.knative.router.nodes import (
    ROOT,
    Answer,
    Call,
    RoutingError,
    Step,
    condition_holds,
    route,
    step_input,
)
from knserve.runtime.asgi import Receive, Scope, Send, read_body, send_body

__all__ = ["READINESS_PATH", "RouterApp", "compile_patterns", "error_body"]

log = logging.getLogger("knserve.router")

READINESS_PATH = "/readyz"  # KServe's RouterReadinessEndpoint
ERROR_MESSAGE = "Failed to process request"


def error_body(cause: str) -> bytes:
    """KServe's InferenceGraphRoutingError as JSON."""
    return json.dumps({"error": ERROR_MESSAGE, "cause": cause}, separators=(",", ":")).encode()


def compile_patterns(patterns: str) -> list[re.Pattern[str]]:
    """`PROPAGATE_HEADERS`' patterns (comma-separated), each matched anywhere in a header's name
    as Go's regexp.MatchString does; a pattern that does not compile is logged and skipped."""
    compiled = []
    for pattern in (p for p in patterns.split(",") if p):
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            log.error("failed to compile pattern %r: %s", pattern, exc)
    return compiled


def _valid_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


class RouterApp:
    """An ASGI app that runs `spec` (an InferenceGraph's spec) for every request."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        propagate: Sequence[re.Pattern[str]] = (),
        sink: str | None = None,
        graph: tuple[str, str] = ("default", "graph"),
    ) -> None:
        self.spec = spec
        self.sink = sink  # the broker of an async graph
        self.namespace, self.graph = graph
        self.nodes: Mapping[str, Mapping[str, Any]] = spec.get("nodes") or {}
        self.propagate = list(propagate)
        timeouts = spec.get("routerTimeouts") or {}
        client_timeout = timeouts.get("serviceClient")
        timeout = httpx.Timeout(None if client_timeout is None else float(client_timeout))
        self.client = httpx.AsyncClient(timeout=timeout)  # HTTP_PROXY: the plane's gateway
        # Steps go straight to httpx's transports: the client's per-request machinery (auth,
        # redirects, cookies, event hooks) is a quarter of a call's cost and steps need none.
        self._timeout = {"timeout": timeout.as_dict()}
        self._routes = StepTransports()
        self.shutting_down = False

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._routes.aclose()

    def _headers(self, incoming: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        """The request's headers that a propagation pattern matches, then a JSON content type."""
        out: list[tuple[str, str]] = []
        for raw_name, raw_value in incoming:
            name = raw_name.decode("latin-1")
            canonical = "-".join(part.capitalize() for part in name.split("-"))
            if any(p.search(canonical) for p in self.propagate):
                out.append((name, raw_value.decode("latin-1")))
        if not any(name.lower() == "content-type" for name, _ in out):
            out.append(("Content-Type", "application/json"))
        return out

    async def call(self, step: Step, body: bytes, headers: list[tuple[str, str]]) -> Answer:
        url = step.get("serviceUrl") or ""
        try:
            request = httpx.Request(
                "POST", url, content=body, headers=headers, extensions=self._timeout
            )
            response = await self._routes.for_url(request.url).handle_async_request(request)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise RoutingError(f'Post "{url}": {exc or type(exc).__name__}') from exc
        return Answer(content, response.status_code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == READINESS_PATH:
            status = 503 if self.shutting_down else 200
            body = b"shutting down\n" if self.shutting_down else b""
            await send_body(send, status, body, [(b"content-type", b"text/plain; charset=utf-8")])
            return
        request = await read_body(receive)
        headers = self._headers(scope["headers"])
        try:
            if self.sink is None:
                body, status = await route(self.nodes, ROOT, request, self._caller(headers), _draw)
            else:
                await self._chain(scope["headers"], request, headers, send)
                return
        except RoutingError as exc:
            log.error("failed to process request: %s", exc.cause)
            await send_body(send, exc.status, error_body(exc.cause))
            return
        # Go sniffs what is not JSON; a model's text answer reads as text/plain
        kind = b"application/json" if _valid_json(body) else b"text/plain; charset=utf-8"
        await send_body(send, status, body, [(b"content-type", kind)])

    def _caller(self, headers: list[tuple[str, str]]) -> Call:
        async def call(step: Step, data: bytes) -> Answer:
            return await self.call(step, data, headers)

        return call

    # ---- async chains (knative.router.chain) ----------------------------------------------

    async def _chain(
        self,
        raw_headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        headers: list[tuple[str, str]],
        send: Send,
    ) -> None:
        event = _cloudevent(raw_headers, body)
        if event is not None and event.get("type") == chain.STEP_TYPE:
            reply = await self._run_step(event, headers)
            await send_body(send, 200, _compact(reply), [(b"content-type", STRUCTURED)])
            return
        start = chain.first_event(self.namespace, self.graph, body)
        if start["data"]["request"] is None or isinstance(start["data"]["request"], str):
            raise RoutingError("an async graph takes a JSON request body", 400)
        assert self.sink is not None
        try:
            published = await self.client.post(
                self.sink, content=_compact(start), headers={"content-type": STRUCTURED.decode()}
            )
        except httpx.HTTPError as exc:
            raise RoutingError(f'Post "{self.sink}": {exc or type(exc).__name__}', 502) from exc
        if not 200 <= published.status_code <= 299:
            raise RoutingError(
                f"the broker refused the chain's first event: {published.status_code} "
                f"{published.text}",
                502,
            )
        accepted = {
            "id": start[chain.CHAIN],
            "broker": self.sink,
            "type": chain.RESPONSE_TYPE,
            "source": start["source"],
        }
        await send_body(send, 202, _compact(accepted))

    async def _run_step(
        self, event: dict[str, Any], headers: list[tuple[str, str]]
    ) -> chain.StepEvent:
        """One root step for a delivered `step` event; the reply event. A step that cannot be
        reached raises RoutingError 502, so the broker retries the delivery."""
        index, chain_id, request, previous = chain.decode_step(event)
        steps: list[Step] = (self.nodes.get(ROOT) or {}).get("steps") or []
        if index >= len(steps):
            raise RoutingError(f"the root node has no step {index}", 400)
        step = steps[index]
        ns, graph = self.namespace, self.graph
        if step.get("condition") and not condition_holds(step, previous):
            return chain.response_event(ns, graph, chain_id, Answer(previous or b"", 200))
        data = step_input(step, index, request, previous)
        try:
            if step.get("nodeName"):
                answer = await route(
                    self.nodes, step["nodeName"], data, self._caller(headers), _draw
                )
            else:
                answer = await self.call(step, data, headers)
        except RoutingError as exc:
            if exc.status >= 500:
                raise RoutingError(exc.cause, 502) from exc
            answer = Answer(error_body(exc.cause), exc.status)
        hard_failure = step.get("dependency") == "Hard" and not 200 <= answer.status <= 299
        if index + 1 >= len(steps) or hard_failure:
            return chain.response_event(ns, graph, chain_id, answer)
        return chain.next_event(ns, graph, chain_id, index, request, answer)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutting_down = True
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


class StepTransports:
    """httpx transports for the steps: through `HTTP_PROXY` (the plane's gateway) unless
    `NO_PROXY` names the host (`*` for all, a name, or a domain suffix), as httpx's client
    reads the environment."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        proxy = env.get("HTTP_PROXY") or env.get("http_proxy")
        no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
        self.bypass = [h.strip().lstrip(".").lower() for h in no_proxy.split(",") if h.strip()]
        self.direct = httpx.AsyncHTTPTransport(limits=limits)
        self.proxied = (
            httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)
            if proxy and "*" not in self.bypass
            else None
        )

    def for_url(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        if self.proxied is None or url.scheme != "http":
            return self.direct
        host = url.host.lower()
        if any(host == h or host.endswith("." + h) for h in self.bypass):
            return self.direct
        return self.proxied

    async def aclose(self) -> None:
        await self.direct.aclose()
        if self.proxied is not None:
            await self.proxied.aclose()


STRUCTURED = b"application/cloudevents+json"


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _cloudevent(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> dict[str, Any] | None:
    """The CloudEvent of a request in structured or binary mode, or None if it is none."""
    found = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
    if found.get("content-type", "").startswith(STRUCTURED.decode()):
        try:
            structured = json.loads(body)
        except ValueError:
            return None
        return structured if isinstance(structured, dict) else None
    if "ce-specversion" not in found:
        return None
    event: dict[str, Any] = {k[3:]: v for k, v in found.items() if k.startswith("ce-")}
    try:
        event["data"] = json.loads(body) if body else None
    except ValueError:
        event["data"] = body.decode("utf-8", "replace")
    return event


def _draw() -> int:
    return secrets.randbelow(100)  # crypto/rand as KServe's pickupRoute draws
