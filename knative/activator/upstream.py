"""Connections to replicas: one keep-alive HTTP/1.1 connection carries one exchange at a time.

An `UpstreamConnection` is an asyncio Protocol with an httptools response parser. While an `Exchange`
is attached it passes the response head, body chunks and completion to it as llhttp reports them; a
1xx interim response is skipped, since the final one follows on the same connection. When the response
is complete and both sides allow it, the exchange hands the connection back to its replica's idle pool
(`knserve.knative.activator.throttler`). A connection that closes while idle tells its pool to forget it; one
that closes under an exchange tells the exchange, which retries or answers 502.

A response with neither Content-Length nor chunked framing (an HTTP/1.0 server's, or one that sends
`Connection: close`) ends when the replica closes the connection (RFC 9112 §6.3): a clean close
completes it, and the connection, closed, is never pooled. A reset is no such end: the exchange is
told the connection was lost, which cuts its client off.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httptools

if TYPE_CHECKING:
    from knserve.knative.activator.exchange import Exchange

# Headers that frame a response body; without either it runs until the connection closes.
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class Pool(Protocol):
    """What an upstream connection needs from its replica: to be forgotten once closed while idle."""

    def forget(self, connection: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a replica, carrying one exchange at a time."""

    def __init__(self, pool: Pool, endpoint: str) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.interim = False
        self.served = 0  # responses completed on this connection
        self.response_bytes = False
        self.closed = False
        self.reading_paused = False
        self.tunnel = False  # switched protocols (101): never parsed or pooled again
        self.until_close = False  # the response's body ends when the replica closes the connection
        self.fd = -1

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def dropped(self) -> bool:
        """Whether the replica closed this idle connection (or wrote to it unasked) in a way the
        loop has not processed yet: an idle connection has nothing to read. Checked before a
        pooled connection carries a request, so a request is not written to a replica that has
        gone (killed, or closing idle connections) and then lost with it."""
        if self.fd < 0:
            return False
        poller = select.poll()  # not select(): descriptors above 1023 are common under load
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(0))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self.exchange
        self.exchange = None
        if exchange is None:
            self.pool.forget(self)
        elif self.until_close and exc is None:
            # llhttp has no end-of-input call here: the close is the end of the body.
            self.until_close = False
            self.served += 1
            exchange.response_complete(False)
        else:
            exchange.upstream_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        self.response_bytes = True
        exchange = self.exchange
        if exchange is not None and exchange.clock is not None:
            exchange.last_byte = exchange.clock()  # for idleTimeoutSeconds
        if self.tunnel:
            if exchange is not None:
                exchange.client.transport.write(data)
            return
        try:
            self.parser.feed_data(data)
            if exchange is not None:
                exchange.client.flush()
        except httptools.HttpParserUpgrade as upgrade:
            # 101 Switching Protocols: the rest of the bytes belong to the tunnel.
            offset = upgrade.args[0] if upgrade.args else len(data)
            if exchange is not None and offset < len(data):
                exchange.client.transport.write(data[offset:])
        except httptools.HttpParserError as exc:
            exchange = self.exchange
            self.exchange = None
            self.transport.abort()
            if exchange is not None:
                exchange.upstream = None
                exchange.respond_error(
                    502, f"Replica {self.endpoint} sent a malformed HTTP response: {exc}"
                )

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_write_paused(False)

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.headers = []
        self.reason = b""
        self.until_close = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        if status == 101 and exchange is not None and exchange.upgrade:
            self.tunnel = True
            exchange.response_head(status, self.reason or b"Switching Protocols", self.headers)
            return
        self.interim = status < 200
        if self.interim:
            return  # 1xx: the final response follows on the same connection
        self.until_close = status not in (204, 304) and not any(
            name.lower() in _FRAMING for name, _ in self.headers
        )
        if exchange is not None:
            exchange.response_head(status, self.reason or b"OK", self.headers)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.response_body(body)

    def on_message_complete(self) -> None:
        self.until_close = False
        if self.tunnel:
            return
        if self.interim:
            self.interim = False
            return
        self.served += 1
        exchange = self.exchange
        if exchange is not None:
            exchange.response_complete(self.parser.should_keep_alive())


def connect_upstream(
    loop: asyncio.AbstractEventLoop,
    pool: Pool,
    endpoint: str,
    done: Callable[[UpstreamConnection | None, BaseException | None], None],
) -> asyncio.Task[Any]:
    """Open a connection to `endpoint` ("host:port") and call `done(connection, error)`."""
    host, _, port = endpoint.rpartition(":")

    async def connect() -> None:
        try:
            _, protocol = await loop.create_connection(
                lambda: UpstreamConnection(pool, endpoint), host.strip("[]"), int(port)
            )
        except (OSError, ValueError) as exc:
            done(None, exc)
        else:
            done(protocol, None)

    return loop.create_task(connect(), name=f"knserve-gateway-connect-{endpoint}")
