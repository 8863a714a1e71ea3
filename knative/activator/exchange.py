"""An exchange: one request and its response on their way through the gateway, without copies.

`ClientProtocol` (`knserve.knative.activator.proxy`) creates an `Exchange` per request head and the throttler
attaches it to a replica connection (`knserve.knative.activator.upstream`). From then on:

1. Request body chunks go to the replica's transport as they arrive (a chunked request is re-framed
   chunk by chunk); until a connection is attached they are held and the client is paused, so at most
   one socket read is buffered.
2. The replica's response head is rewritten for the client (hop-by-hop headers dropped, Content-Length
   kept, otherwise chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones) and body chunks are
   passed through as they arrive. What one replica read produces goes out in one write.
3. On completion the replica connection goes back to its replica's pool if both sides kept it alive,
   and the client connection moves on to its next request.

Flow control follows the transports: a replica that stops reading pauses the client's reads, a client
that stops reading pauses the replica's; the pauses belong to the exchange and end with it.

A request that asks to switch protocols (WebSocket) is forwarded with its `Connection: upgrade`; if the
replica answers 101 both connections become a byte tunnel until either side closes, and the request
counts as in flight all the while, as a WebSocket does in Knative. Any other answer ends both connections.

A pooled connection the replica closed while idle can fail the next request before any response byte;
a request without a body is then sent again once on a new connection, as browsers and proxies do. So
is one with a body if the replica reset the connection (a reset, not a close: the replica closed its
socket with the request unread, so no model saw it) and the whole request was here when it was sent:
its bytes are kept until the answer begins. A request the replica may have read is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from knserve.knative.activator.proxy import ClientProtocol
    from knserve.knative.activator.upstream import UpstreamConnection


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
# Knative's header naming the tag a request is for (tag-header-based-routing).
TAG_HEADER = b"knative-serving-tag"
_LAST_CHUNK = b"0\r\n\r\n"
# SO_LINGER on with a zero timeout: closing the socket sends RST and discards what is unsent.
_LINGER_RESET = struct.pack("ii", 1, 0)
_NO_BODY_STATUS = frozenset({204, 304})

# Reasons a client connection's reads are paused; reading resumes when none is left.
PAUSE_PENDING = 1  # body arrives before a replica connection is attached
PAUSE_PIPELINE = 2  # a later request waits behind the one being answered
PAUSE_BACKPRESSURE = 4  # the replica is not reading the body as fast as it comes

REASONS = {
    400: b"Bad Request",
    500: b"Internal Server Error",
    404: b"Not Found",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def error_response(
    status: int,
    message: str,
    keep_alive: bool,
    request_id: bytes = b"",
    retry_after: int | None = None,
) -> bytes:
    """A complete plain-text HTTP/1.1 response carrying `message` (and the request's id, and
    `Retry-After` if given)."""
    body = message.encode() + b"\n"
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error")),
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body),
            b"x-request-id: %s\r\n" % request_id if request_id else b"",
            b"" if retry_after is None else b"retry-after: %d\r\n" % retry_after,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )


def peer_forwarded(transport: asyncio.BaseTransport) -> tuple[bytes, bytes]:
    """The client's address as `X-Forwarded-For` and `Forwarded` name it."""
    peer = transport.get_extra_info("peername")
    ip = peer[0] if peer else "unknown"
    return ip.encode(), (f'for="[{ip}]"' if ":" in ip else f"for={ip}").encode()


class Exchange:
    """One request and its response on their way through the gateway."""

    __slots__ = (
        "arrived",
        "assigned",
        "attempts",
        "client",
        "clock",
        "has_body",
        "head",
        "host",
        "is_head",
        "keep_alive",
        "last_byte",
        "pending",
        "record",
        "replica",
        "request_chunked",
        "request_done",
        "request_id",
        "response_chunked",
        "response_started",
        "retried",
        "revision",
        "safe",
        "sent",
        "state",
        "status",
        "tag",
        "timer",
        "tunnel",
        "until_close",
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
        self.safe = False  # GET, HEAD or OPTIONS
        self.retried = False
        self.sent: list[bytes] | None = None  # the whole request as written, until the answer
        self.attempts = 0  # replicas that could not be reached for it (the throttler's retries)
        self.has_body = False
        self.request_chunked = False
        self.request_done = False
        self.pending: list[bytes] = []
        self.request_id = b""  # its x-request-id, the client's or the gateway's, sent back too
        self.record: Any = None  # the telemetry's RequestRecord, when tracing or access logging
        self.upstream: UpstreamConnection | None = None
        self.replica: Any = None  # the gateway's Replica once assigned
        self.revision: Any = None  # the gateway's revision state once routed
        self.timer: asyncio.TimerHandle | None = None
        self.arrived = 0.0  # loop time the revision admitted it; its timeouts count from here
        self.assigned = 0.0  # loop time a replica was picked for it
        self.status = 0  # the response's status code, once there is one (for metrics)
        # The loop's clock while the revision has an idleTimeoutSeconds: replica reads stamp
        # `last_byte` with it. None otherwise, so the common case costs one test per read.
        self.clock: Callable[[], float] | None = None
        self.last_byte: float | None = None
        self.response_started = False
        self.response_chunked = False
        self.until_close = False  # the client reads the response body until the connection closes
        self.state = 0  # 0 open, 1 finished
        self.upgrade = False  # the request asks to switch protocols (WebSocket)
        self.tunnel = False  # the replica agreed (101): bytes flow both ways unparsed

    # -- request side -------------------------------------------------------------------------
    def attach(self, upstream: UpstreamConnection) -> None:
        """Send this request on `upstream`, with whatever body arrived so far."""
        self.upstream = upstream
        upstream.exchange = self
        upstream.response_bytes = False
        if self.sent is not None:  # again: the replica reset the connection without reading it
            upstream.transport.writelines(self.sent)
            return
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
        if self.request_done:
            self.sent = parts
        self.pending = []
        self.client.resume_reading(PAUSE_PENDING)

    def request_body(self, body: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            if self.state == 0:
                self.pending.append(body)
                self.client.pause_reading(PAUSE_PENDING)
        elif self.request_chunked:
            upstream.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
        else:
            upstream.transport.write(body)

    def upstream_write_paused(self, paused: bool) -> None:
        """The replica stopped (or resumed) reading the request body: pause (or resume) the client."""
        if paused:
            self.client.pause_reading(PAUSE_BACKPRESSURE)
        else:
            self.client.resume_reading(PAUSE_BACKPRESSURE)

    def request_complete(self) -> None:
        self.request_done = True
        if self.upstream is not None and self.request_chunked:
            self.upstream.transport.write(_LAST_CHUNK)

    # -- response side ------------------------------------------------------------------------
    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if self.state:
            return
        self.sent = None
        # The timer stays: timeoutSeconds and idleTimeoutSeconds go on bounding the body, and a
        # WebSocket's whole life, as Knative's timeout handler bounds a hijacked connection.
        self.response_started = True
        if self.record is not None:
            self.record.status = status
        self.status = status
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
        request_id = self.request_id
        for name, value in headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == b"content-length":
                has_length = True
            elif lower == b"x-request-id":
                request_id = b""  # the replica's own answer stands
            parts += (name, b": ", value, b"\r\n")
        if request_id:
            parts += (b"x-request-id: ", request_id, b"\r\n")
        if not (self.is_head or status in _NO_BODY_STATUS or has_length):
            if self.version == "1.1":
                self.response_chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                # An HTTP/1.0 client reads a body without a length until the connection closes.
                self.keep_alive = False
                self.until_close = True
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
        if self.record is not None:
            self.record.sent += len(body)
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
    def respond_error(self, status: int, message: str, retry_after: int | None = None) -> None:
        """Answer with the gateway's own error, or cut the client off if the response has begun."""
        if self.state:
            return
        if not self.response_started:
            self.status = status
        self._drop_upstream()
        if self.record is not None and not self.response_started:
            self.record.status = status
        self._finish(None)
        if self.response_started:
            transport = self.client.transport
            if self.until_close:
                # A reset, not a close, which this client would take for the end of the body.
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
            return
        # The rest of an unread request body is read and dropped, so the connection stays usable.
        self.client.resume_reading(PAUSE_PENDING)
        self.pending = []
        self.client.out.append(
            error_response(status, message, self.keep_alive, self.request_id, retry_after)
        )
        self.client.exchange_done(self)

    def upstream_lost(self, upstream: UpstreamConnection, exc: Exception | None) -> None:
        """The replica connection closed under this exchange."""
        self.upstream = None
        if self.state:
            return
        # Sent again (once) on a new connection when the replica cannot have acted on it: a pooled
        # connection that the replica had closed, or a safe request to a replica that died with the
        # connection still in its listen backlog (the replaced-replica case).
        retry = upstream.served or self.safe
        unread = self.sent is not None and isinstance(exc, ConnectionResetError)
        if not upstream.response_bytes and (unread or (retry and not self.has_body)):
            if not self.retried:
                self.retried = True
                self.revision.reconnect(self)
            else:  # reset again: the replica is going away, so the request goes elsewhere or waits
                self.revision.unreachable(self, exc)
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
        if self.record is not None:
            self.client.telemetry.finished(self)
        # Flow control belonged to this exchange; the next one starts unpaused.
        self.client.resume_reading(PAUSE_BACKPRESSURE)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        revision = self.revision
        if revision is not None:
            revision.release(self, upstream)
        elif upstream is not None:
            upstream.transport.close()
