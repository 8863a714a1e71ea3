"""The gateway's HTTP/1.1 proxy: client connections in, pooled replica connections out, no copies.

Everything here is an asyncio `Protocol` driven by callbacks, with httptools (llhttp) parsing the
clients' requests and the replicas' responses. A request costs no task, no coroutine and no body copy:

1. `ClientProtocol` parses a request head and builds the head to forward (hop-by-hop headers dropped,
   `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` added, as Knative's ingress does) into one
   bytes object, then hands the `Exchange` to its `Dispatcher` (the gateway), which picks a revision and a
   replica and calls `Exchange.attach` with a pooled `UpstreamConnection`, or queues it.
2. Request body chunks go to the replica's transport as they arrive (a chunked request is re-framed
   chunk by chunk); until a connection is attached they are held and the client is paused, so at most
   one socket read is buffered.
3. `UpstreamConnection` (in `knserve.knative.upstream`) parses the response; its head is rewritten for the client (Content-Length kept,
   otherwise chunked to HTTP/1.1 clients) and body chunks are written through as they arrive.
4. On completion the replica connection goes back to its replica's pool if both sides kept it alive.

Flow control follows the transports: a replica that stops reading pauses the client's reads, a client
that stops reading pauses the replica's. Pipelined requests are answered in order: only the oldest
exchange of a client connection is dispatched, the later ones wait (their bodies buffered, reading paused).

A request that asks to switch protocols (WebSocket) is forwarded with its `Connection: upgrade`; if the
replica answers 101 both connections become a byte tunnel until either side closes, and the request
counts as in flight all the while, as a WebSocket does in Knative. Any other answer ends both connections.

A pooled connection the replica closed while idle can fail the next request before any response byte;
a request without a body is then sent again once on a new connection, as browsers and proxies do.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import httptools

if TYPE_CHECKING:
    from knserve.knative.upstream import UpstreamConnection

# RFC 9110 §7.6.1: these describe one connection and are never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
logger = logging.getLogger(__name__)

TAG_HEADER = b"knative-serving-tag"
_LAST_CHUNK = b"0\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUS = frozenset({204, 304})

# Reasons a client connection's reads are paused; reading resumes when none is left.
_PAUSE_PENDING = 1  # body arrives before a replica connection is attached
_PAUSE_PIPELINE = 2  # a later request waits behind the one being answered
_PAUSE_BACKPRESSURE = 4  # the replica is not reading the body as fast as it comes

REASONS = {
    400: b"Bad Request",
    500: b"Internal Server Error",
    404: b"Not Found",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


class Dispatcher(Protocol):
    """What the proxy needs from the gateway: somewhere to send a parsed request."""

    def dispatch(self, exchange: Exchange) -> None: ...


def error_response(status: int, message: str, keep_alive: bool) -> bytes:
    """A complete plain-text HTTP/1.1 response carrying `message`."""
    body = message.encode() + b"\n"
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error")),
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body),
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )


class Exchange:
    """One request and its response on their way through the gateway."""

    __slots__ = (
        "client",
        "has_body",
        "head",
        "host",
        "is_head",
        "keep_alive",
        "pending",
        "replica",
        "request_chunked",
        "request_done",
        "response_chunked",
        "response_started",
        "revision",
        "state",
        "tag",
        "timer",
        "tunnel",
        "upgrade",
        "upstream",
        "version",
    )

    def __init__(self, client: ClientProtocol) -> None:
        self.client = client
        self.head = b""
        self.host = b""
        self.tag: str | None = None
        self.version = "1.1"
        self.keep_alive = True
        self.is_head = False
        self.has_body = False
        self.request_chunked = False
        self.request_done = False
        self.pending: list[bytes] = []
        self.upstream: UpstreamConnection | None = None
        self.replica: Any = None  # the gateway's Replica once assigned
        self.revision: Any = None  # the gateway's revision state once routed
        self.timer: asyncio.TimerHandle | None = None
        self.response_started = False
        self.response_chunked = False
        self.state = 0  # 0 open, 1 finished
        self.upgrade = False  # the request asks to switch protocols (WebSocket)
        self.tunnel = False  # the replica agreed (101): bytes flow both ways unparsed

    # -- request side -------------------------------------------------------------------------
    def attach(self, upstream: UpstreamConnection) -> None:
        """Send this request on `upstream`, with whatever body arrived so far."""
        self.upstream = upstream
        upstream.exchange = self
        upstream.response_bytes = False
        if not self.pending:
            upstream.transport.write(self.head)
            if self.request_done and self.request_chunked:
                upstream.transport.write(_LAST_CHUNK)
            return
        parts = [self.head]
        for chunk in self.pending:
            if self.request_chunked:
                parts += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
            else:
                parts.append(chunk)
        if self.request_done and self.request_chunked:
            parts.append(_LAST_CHUNK)
        upstream.transport.writelines(parts)
        self.pending = []
        self.client.resume_reading(_PAUSE_PENDING)

    def request_body(self, body: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            if self.state == 0:
                self.pending.append(body)
                self.client.pause_reading(_PAUSE_PENDING)
        elif self.request_chunked:
            upstream.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
        else:
            upstream.transport.write(body)

    def upstream_write_paused(self, paused: bool) -> None:
        """The replica stopped (or resumed) reading the request body: pause (or resume) the client."""
        if paused:
            self.client.pause_reading(_PAUSE_BACKPRESSURE)
        else:
            self.client.resume_reading(_PAUSE_BACKPRESSURE)

    def request_complete(self) -> None:
        self.request_done = True
        if self.upstream is not None and self.request_chunked:
            self.upstream.transport.write(_LAST_CHUNK)

    # -- response side ------------------------------------------------------------------------
    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if self.state:
            return
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        self.response_started = True
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        if status == 101:
            self.tunnel = True
            for name, value in headers:
                parts += (name, b": ", value, b"\r\n")
            parts.append(b"\r\n")
            self.client.out += parts
            self.client.flush()
            return
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == b"content-length":
                has_length = True
            parts += (name, b": ", value, b"\r\n")
        if not (self.is_head or status in _NO_BODY_STATUS or has_length):
            if self.version == "1.1":
                self.response_chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                # An HTTP/1.0 client reads a body without a length until the connection closes.
                self.keep_alive = False
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        elif self.version == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.client.out += parts
        if self.client.write_paused and self.upstream is not None:
            self.upstream.pause_reading()
        if self.is_head:
            # llhttp would wait for the body a HEAD response announces but never sends.
            self.response_complete(reusable=False)

    def response_body(self, body: bytes) -> None:
        if self.state:
            return
        if self.response_chunked:
            self.client.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.client.out.append(body)

    def response_complete(self, reusable: bool) -> None:
        if self.state:
            return
        if self.response_chunked:
            self.client.out.append(_LAST_CHUNK)
        if not self.request_done or self.upgrade:
            # The replica answered before reading the whole body, or refused to switch protocols:
            # neither connection can carry on.
            reusable = False
            self.keep_alive = False
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.exchange = None
            upstream.resume_reading()
            if not reusable:
                upstream.transport.close()
                upstream = None
        self._finish(upstream)
        self.client.exchange_done(self)

    # -- failures -----------------------------------------------------------------------------
    def respond_error(self, status: int, message: str) -> None:
        """Answer with the gateway's own error, or cut the client off if the response has begun."""
        if self.state:
            return
        self._drop_upstream()
        self._finish(None)
        if self.response_started:
            self.client.transport.abort()
            return
        # The rest of an unread request body is read and dropped, so the connection stays usable.
        self.client.resume_reading(_PAUSE_PENDING)
        self.pending = []
        self.client.out.append(error_response(status, message, self.keep_alive))
        self.client.exchange_done(self)

    def upstream_lost(self, upstream: UpstreamConnection, exc: Exception | None) -> None:
        """The replica connection closed under this exchange."""
        self.upstream = None
        if self.state:
            return
        if upstream.served and not upstream.response_bytes and not self.has_body:
            upstream.served = 0  # only once
            self.revision.reconnect(self)
            return
        where = upstream.endpoint
        if self.tunnel:
            # The replica ended the tunnel: pass the end on to the client.
            self.client.flush()
            self._finish(None)
            self.client.transport.close()
            return
        if self.response_started:
            self.respond_error(502, "")
        else:
            detail = f": {exc}" if exc else ""
            self.respond_error(
                502, f"Revision {self.revision.name} replica {where} closed the connection{detail}"
            )

    def abort(self) -> None:
        """The client went away: stop the request wherever it is."""
        if self.state:
            return
        self._drop_upstream()
        self._finish(None)

    def _drop_upstream(self) -> None:
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.exchange = None
            if self.tunnel:
                upstream.transport.close()  # the client ended the tunnel: let its last bytes go
            else:
                upstream.transport.abort()

    def _finish(self, upstream: UpstreamConnection | None) -> None:
        self.state = 1
        # Flow control belonged to this exchange; the next one starts unpaused.
        self.client.resume_reading(_PAUSE_BACKPRESSURE)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        revision = self.revision
        if revision is not None:
            revision.release(self, upstream)
        elif upstream is not None:
            upstream.transport.close()


class ClientProtocol(asyncio.Protocol):
    """One client connection: parse requests, dispatch them in order, write their responses."""

    def __init__(self, dispatcher: Dispatcher, connections: set[ClientProtocol]) -> None:
        self.dispatcher = dispatcher
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
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else "unknown"
        self.forwarded_for = ip.encode()
        self.forwarded = (f'for="[{ip}]"' if ":" in ip else f"for={ip}").encode()

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
            self._reject(400, f"Malformed HTTP request: {exc}")

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
        parts = [method, b" ", self.url, b" HTTP/1.1\r\n"]
        forwarded_for = self.forwarded_for
        forwarded = self.forwarded
        proto = True
        expect = False
        host_index = 0
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
            parts += (name, b": ", value, b"\r\n")
        if self.url[:1] != b"/" and self.url[:7].lower() == b"http://":
            parts[2] = self._origin_form(self.url, exchange)
            if host_index:
                parts[host_index] = exchange.host
            else:
                parts += (b"host: ", exchange.host, b"\r\n")
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
            self.pause_reading(_PAUSE_PIPELINE)

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
                self.resume_reading(_PAUSE_PIPELINE)
            self._dispatch(following)
        elif self.paused & _PAUSE_PIPELINE:
            self.resume_reading(_PAUSE_PIPELINE)

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
