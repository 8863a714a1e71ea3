"""The gateway's HTTP/1.1 front: client connections parsed by httptools, requests handed on in order.

Everything here is an asyncio `Protocol` driven by callbacks, with httptools (llhttp) parsing the
clients' requests. A request costs no task and no coroutine: `ClientProtocol` parses a request head and
builds the head to forward in one bytes object (hop-by-hop headers dropped; `X-Forwarded-For`,
`X-Forwarded-Proto` and `Forwarded` added, as Knative's ingress does), then hands the `Exchange`
(`knserve.knative.activator.exchange`) to its `Dispatcher` (the gateway), which picks a revision and a replica.

Pipelined requests are answered in order: only the oldest exchange of a connection is dispatched, the
later ones wait (their bodies buffered, reading paused). A request in absolute form
(`GET http://host/path`, from a replica that uses the gateway as its HTTP proxy) is routed by its host
and forwarded in origin form. A WebSocket upgrade turns the connection into its exchange's tunnel.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

import httptools

from knserve.knative.activator.exchange import (
    HOP_BY_HOP,
    PAUSE_PIPELINE,
    TAG_HEADER,
    Exchange,
    error_response,
    peer_forwarded,
)
from knserve.knative.activator.h2c import H2ClientProtocol
from knserve.knative.activator.h2c_upstream import H2Upstreams
from knserve.knative.activator.telemetry import FORWARDED, Telemetry

logger = logging.getLogger(__name__)

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


# A reset before any response byte may be retried for these: the replica changed nothing.
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


class Dispatcher(Protocol):
    """What the proxy needs from the gateway: somewhere to send a parsed request."""

    telemetry: Telemetry  # request ids, trace headers, spans, the access log
    h2_upstreams: H2Upstreams  # h2c connections to replicas, for HTTP/2 clients

    def dispatch(self, exchange: Exchange) -> None: ...


class ClientProtocol(asyncio.Protocol):
    """One client connection: parse requests, dispatch them in order, write their responses."""

    def __init__(self, dispatcher: Dispatcher, connections: set[ClientProtocol]) -> None:
        self.dispatcher = dispatcher
        self.telemetry = dispatcher.telemetry
        self.connections = connections
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.exchanges: deque[Exchange] = deque()
        self.current: Exchange | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.paused = 0
        self.tunnel: Exchange | None = None  # the upgraded exchange this connection now carries
        self.out: list[bytes] = []  # response bytes not yet written: one write per replica read
        self.write_paused = False
        self.closed = False
        self.forwarded_for = b""
        self.forwarded = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.forwarded_for, self.forwarded = peer_forwarded(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        for exchange in self.exchanges:
            exchange.abort()
        self.exchanges.clear()

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.request_body(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # The request head asked for another protocol: from here on the bytes are the tunnel's.
            if self.closed or self.transport.is_closing():
                return  # the upgrade was already refused (404, 503, ...)
            if not self.exchanges or not self.exchanges[-1].upgrade:
                self._reject(400, "Malformed upgrade request")
                return
            self.tunnel = self.exchanges[-1]
            offset = upgrade.args[0] if upgrade.args else len(data)
            if offset < len(data):
                self.tunnel.request_body(data[offset:])
        except httptools.HttpParserError as exc:
            if data[:4] == b"PRI " and not self.exchanges:
                self._take_h2c(data)  # llhttp stops at HTTP/2's preface: the h2c front takes over
                return
            self._reject(400, f"Malformed HTTP request: {exc}")

    def _take_h2c(self, data: bytes) -> None:
        self.connections.discard(self)
        self.current = None
        front = H2ClientProtocol(self.dispatcher, self.connections)
        front.take_over(self.transport, data)

    def _reject(self, status: int, message: str) -> None:
        if self.exchanges:
            self.transport.abort()
            return
        self.transport.write(error_response(status, message, keep_alive=False))
        self.transport.close()

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.current = Exchange(self)
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.current
        if exchange is None:
            return
        parser = self.parser
        upgrade = parser.should_upgrade()
        method = parser.get_method()
        exchange.version = parser.get_http_version()
        exchange.keep_alive = parser.should_keep_alive()
        exchange.is_head = method == b"HEAD"
        exchange.safe = method in SAFE_METHODS
        parts = [method, b" ", self.url, b" HTTP/1.1\r\n"]
        forwarded_for = self.forwarded_for
        forwarded = self.forwarded
        proto = True
        expect = False
        host_index = 0
        traced: list[tuple[bytes, bytes]] = []
        for name, value in self.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                if lower == b"transfer-encoding":
                    exchange.has_body = exchange.request_chunked = True
                elif lower == b"upgrade" and upgrade:
                    parts += (b"connection: upgrade\r\n", name, b": ", value, b"\r\n")
                continue
            if lower == b"host":
                exchange.host = value
                host_index = len(parts) + 2
            elif lower == b"content-length":
                exchange.has_body = value != b"0"
            elif lower == TAG_HEADER:
                exchange.tag = value.decode("latin-1").strip()
            elif lower == b"x-forwarded-for":
                forwarded_for = value + b", " + forwarded_for
                continue
            elif lower == b"forwarded":
                forwarded = value + b", " + forwarded
                continue
            elif lower == b"x-forwarded-proto":
                proto = False
            elif lower == b"expect":
                expect = value.lower() == b"100-continue"
                continue
            elif lower in FORWARDED:  # the request id and trace context: the gateway writes them
                traced.append((lower, value))
                continue
            parts += (name, b": ", value, b"\r\n")
        if self.url[:1] != b"/" and self.url[:7].lower() == b"http://":
            parts[2] = self._origin_form(self.url, exchange)
            if host_index:
                parts[host_index] = exchange.host
            else:
                parts += (b"host: ", exchange.host, b"\r\n")
        parts.append(self.telemetry.forward(exchange, traced))
        if exchange.request_chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts += (b"x-forwarded-for: ", forwarded_for, b"\r\nforwarded: ", forwarded)
        parts.append(b";proto=http\r\nx-forwarded-proto: http\r\n\r\n" if proto else b"\r\n\r\n")
        exchange.head = b"".join(parts)
        if upgrade:
            # After a tunnel, or a refused upgrade, the connection carries no more HTTP requests.
            exchange.upgrade = True
            exchange.keep_alive = False
        self.exchanges.append(exchange)
        if len(self.exchanges) == 1:
            if expect:
                self.transport.write(_CONTINUE)
            self._dispatch(exchange)
        else:
            self.pause_reading(PAUSE_PIPELINE)

    @staticmethod
    def _origin_form(url: bytes, exchange: Exchange) -> bytes:
        """`http://host/path?q` as `/path?q`, routed by that host: the gateway used as an HTTP proxy.

        Replicas reach other services through the gateway by `HTTP_PROXY`, as cluster DNS would route
        them; clients then send the absolute form, whose authority is the host to route by.
        """
        rest = url[7:]
        end = len(rest)
        for mark in (b"/", b"?"):
            found = rest.find(mark)
            if 0 <= found < end:
                end = found
        exchange.host = rest[:end]  # RFC 9112 §3.2.2: the target's authority replaces Host
        path = rest[end:]
        return path if path.startswith(b"/") else b"/" + path

    def _dispatch(self, exchange: Exchange) -> None:
        try:
            self.dispatcher.dispatch(exchange)
        except Exception as exc:
            # A bug must cost one request a 500, never leave the client waiting forever.
            logger.exception("gateway failed to dispatch a request")
            exchange.respond_error(500, f"The gateway failed to route the request: {exc!r}")

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.request_body(body)

    def on_message_complete(self) -> None:
        if self.current is not None:
            self.current.request_complete()
            self.current = None

    # -- exchange lifecycle -------------------------------------------------------------------
    def exchange_done(self, exchange: Exchange) -> None:
        """`exchange` has written its whole response; close or move on to the next request."""
        self.flush()
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        if not exchange.keep_alive:
            self.transport.close()
            return
        if self.exchanges:
            following = self.exchanges[0]
            if len(self.exchanges) == 1:
                self.resume_reading(PAUSE_PIPELINE)
            self._dispatch(following)
        elif self.paused & PAUSE_PIPELINE:
            self.resume_reading(PAUSE_PIPELINE)

    def flush(self) -> None:
        """Write what the exchanges produced since the last flush, in one system call."""
        out = self.out
        if out:
            self.out = []
            if self.closed:
                return
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)  # one writev, no copy of the body

    def pause_reading(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and not self.closed:
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchanges and self.exchanges[0].upstream is not None:
            self.exchanges[0].upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchanges and self.exchanges[0].upstream is not None:
            self.exchanges[0].upstream.resume_reading()
