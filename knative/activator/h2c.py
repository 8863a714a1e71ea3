"""The gateway's HTTP/2 cleartext front: gRPC clients' connections, one request per stream.

gRPC clients speak HTTP/2 with prior knowledge: their first bytes are the connection preface
`PRI * HTTP/2.0`. The HTTP/1.1 front (`knserve.knative.activator.proxy`) sees it and hands the
connection here, to an `H2ClientProtocol` driven by the `h2` library's state machine.

Each stream is an `H2Stream`, which the gateway treats as it treats an HTTP/1.1 `Exchange`:
`Gateway.dispatch` routes it by its `:authority` as a request is routed by its Host (traffic split,
tags, InferenceService hosts), the revision's throttler counts it against `containerConcurrency`,
holds it while the revision scales from zero and bounds it by the revision's timeouts; a stream is
a request. It goes to its replica over an h2c connection shared with other streams
(`knserve.knative.activator.h2c_upstream`), as Knative carries h2c to a container port named `h2c`.
Response headers, data and trailers (where gRPC puts its status) come back as the replica sent them.

Errors the gateway answers itself reach a gRPC client as a gRPC status in a trailers-only response
(404 as NOT_FOUND, 503 and 502 as UNAVAILABLE, 504 as DEADLINE_EXCEEDED) with the same message an
HTTP/1.1 client reads; any other client gets the HTTP status and the message as a text body.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from urllib.parse import quote

from h2 import events
from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from hpack import NeverIndexedHeaderTuple

from knserve.knative.activator.exchange import HOP_BY_HOP, TAG_HEADER, peer_forwarded
from knserve.knative.activator.h2c_upstream import H2Peer, H2Upstream, H2Upstreams, Outbox, start
from knserve.knative.activator.telemetry import FORWARDED, Telemetry

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The gateway's own errors as gRPC status codes (grpc/status codes).
GRPC_CODES = {400: 3, 404: 5, 500: 13, 502: 14, 503: 14, 504: 4}
# Header fields whose value is new in every request (see `_header_lines`).
PER_REQUEST = frozenset({b"x-request-id", b"traceparent", b"x-b3-traceid", b"x-b3-spanid"})


class Dispatcher(Protocol):
    """What the h2c front needs from the gateway: where to send a stream, telemetry, the pool."""

    telemetry: Telemetry
    h2_upstreams: H2Upstreams

    def dispatch(self, exchange: Any) -> None: ...


class H2ClientProtocol(H2Peer):
    """One client's HTTP/2 connection: each stream a request for the gateway to route."""

    def __init__(self, dispatcher: Dispatcher, connections: set[Any]) -> None:
        super().__init__(client_side=False)
        self.dispatcher = dispatcher
        self.telemetry = dispatcher.telemetry
        self.connections = connections
        self.upstreams = dispatcher.h2_upstreams
        self.exchanges: dict[int, H2Stream] = {}  # open streams (the gateway's close reads it)
        self.forwarded_for = b""
        self.forwarded = b""

    def take_over(self, transport: asyncio.Transport, data: bytes) -> None:
        """Carry on the connection `transport` from its first bytes `data` (the preface)."""
        transport.set_protocol(self)
        self.connection_made(transport)
        self.data_received(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.forwarded_for, self.forwarded = peer_forwarded(transport)
        start(self.conn)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        for stream in list(self.exchanges.values()):
            stream.abort()
        self.exchanges.clear()

    def data_received(self, data: bytes) -> None:
        try:
            received = self.conn.receive_data(data)
        except H2Error as exc:
            logger.debug("closing an HTTP/2 client connection: %s", exc)
            self.write_now()  # h2 queued its GOAWAY
            self.transport.close()
            return
        for event in received:
            if isinstance(event, events.DataReceived):
                stream = self.exchanges.get(event.stream_id)
                if stream is None:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                else:
                    stream.request_body(event.data, event.flow_controlled_length)
            elif isinstance(event, events.RequestReceived):
                self._request(event.stream_id, event.headers)
            elif isinstance(event, events.StreamEnded):
                stream = self.exchanges.get(event.stream_id)
                if stream is not None:
                    stream.request_complete()
            elif isinstance(event, events.StreamReset):
                stream = self.exchanges.get(event.stream_id)
                if stream is not None:
                    stream.abort()
            elif isinstance(event, (events.WindowUpdated, events.RemoteSettingsChanged)):
                self.window_opened(getattr(event, "stream_id", 0))
            elif isinstance(event, events.ConnectionTerminated):
                self.transport.close()
        self.flush()

    def _request(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        stream = H2Stream(self, stream_id)
        self.exchanges[stream_id] = stream
        forwarded_for, forwarded = self.forwarded_for, self.forwarded
        traced: list[tuple[bytes, bytes]] = []
        kept = stream.headers
        for name, value in headers:
            if name[:1] == b":":
                stream.pseudo[name] = value
            elif name == b"host":
                stream.host = value
            elif name == TAG_HEADER:
                stream.tag = value.decode("latin-1").strip()
                kept.append((name, value))
            elif name == b"x-forwarded-for":
                forwarded_for = value + b", " + forwarded_for
            elif name == b"forwarded":
                forwarded = value + b", " + forwarded
            elif name in FORWARDED:
                traced.append((name, value))
            elif name == b"content-type":
                stream.grpc = value.startswith(b"application/grpc")
                kept.append((name, value))
            elif name not in HOP_BY_HOP or (name == b"te" and value == b"trailers"):
                kept.append((name, value))
        stream.host = stream.pseudo.get(b":authority", stream.host)
        path = stream.pseudo.get(b":path", b"/")
        # What `Gateway.dispatch` reads of an HTTP/1.1 head: the path, for InferenceService hosts;
        # route headers it appends are forwarded too (see `H2Stream.forward_headers`).
        stream.head = b"%s %s HTTP/2\r\n\r\n" % (stream.pseudo.get(b":method", b"GET"), path)
        ids = self.telemetry.forward(stream, traced)  # type: ignore[arg-type]
        kept += _header_lines(ids)
        kept += (
            (b"x-forwarded-for", forwarded_for),
            (b"forwarded", forwarded + b";proto=http"),
            (b"x-forwarded-proto", b"http"),
        )
        try:
            self.dispatcher.dispatch(stream)  # the gateway takes it as an Exchange
        except Exception as exc:
            logger.exception("gateway failed to dispatch an HTTP/2 stream")
            stream.respond_error(500, f"The gateway failed to route the request: {exc!r}")

    def stream_done(self, stream_id: int) -> None:
        self.exchanges.pop(stream_id, None)


def _header_lines(lines: bytes) -> list[tuple[bytes, bytes]]:
    """HTTP/1.1 header lines ("name: value\\r\\n"...) as HTTP/2 header pairs; ids and trace
    contexts, new in every request, are kept out of HPACK's table (they would only evict the
    fields that repeat, and every lookup walks the table)."""
    pairs: list[tuple[bytes, bytes]] = []
    for line in lines.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            name = name.strip().lower()
            if name in PER_REQUEST:
                pairs.append(NeverIndexedHeaderTuple(name, value.strip()))
            else:
                pairs.append((name, value.strip()))
    return pairs


class H2Stream:
    """One HTTP/2 request: an `Exchange` to the gateway and its throttler, carried by streams."""

    def __init__(self, client: H2ClientProtocol, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.pseudo: dict[bytes, bytes] = {}
        self.headers: list[tuple[bytes, bytes]] = []
        self.host = b""
        self.tag: str | None = None
        self.head = b""
        self.grpc = False
        self.request_id = b""
        self.record: Any = None
        self.body = Outbox()  # request bytes for the replica; held until a connection is attached
        self.upstream: H2Upstream | None = None
        self.upstream_id = 0
        self.replica: Any = None
        self.revision: Any = None
        self.timer: asyncio.TimerHandle | None = None
        self.arrived = 0.0
        self.assigned = 0.0
        self.status = 0
        self.clock: Any = None
        self.last_byte: float | None = None
        self.response_started = False
        self.ended = False  # the response's headers ended the stream (trailers-only)
        self.safe = False
        self.has_body = True
        self.retried = False
        self.state = 0  # 0 open, 1 finished

    # -- the throttler's side -----------------------------------------------------------------
    def connect(self, pool: Any, endpoint: str, done: Any) -> None:
        """Find an h2c connection to `endpoint` for this stream (the throttler's `connect`)."""

        def ready(upstream: H2Upstream | None, error: BaseException | None) -> None:
            if self.state or self.replica is not pool:
                return  # answered meanwhile; the connection stays shared
            done(upstream, error)

        self.client.upstreams.get(endpoint, ready)

    def attach(self, upstream: H2Upstream) -> None:
        """Start the request on `upstream`, with whatever body arrived so far."""
        self.upstream = upstream
        self.upstream_id = upstream.open(self, self.forward_headers())
        pending = sum(len(chunk) for chunk in self.body.chunks)
        upstream.send(self.upstream_id, self.body)
        self.client.conn.acknowledge_received_data(pending, self.stream_id) if pending else None
        self.client.flush()

    def forward_headers(self) -> list[tuple[bytes, bytes]]:
        pseudo = self.pseudo
        headers = [
            (b":method", pseudo.get(b":method", b"GET")),
            (b":scheme", b"http"),
            (b":authority", self.host),
            (b":path", pseudo.get(b":path", b"/")),
        ]
        added = self.head.split(b"\r\n", 1)[1]  # route headers Gateway.dispatch appended
        return headers + self.headers + _header_lines(added)

    def request_body(self, data: bytes, size: int) -> None:
        if self.state:
            self.client.conn.acknowledge_received_data(size, self.stream_id)
            return
        self.body.chunks.append(data)
        upstream = self.upstream
        if upstream is not None:
            upstream.send(self.upstream_id, self.body)
            # Passed on: the client may send as much again.
            self.client.conn.acknowledge_received_data(size, self.stream_id)

    def request_complete(self) -> None:
        self.body.end = True
        if self.upstream is not None and not self.state:
            self.upstream.send(self.upstream_id, self.body)

    # -- the replica's side -------------------------------------------------------------------
    def response_head(self, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        if self.state:
            return
        kept: list[tuple[bytes, bytes]] = []
        has_id = False
        status = b""
        for name, value in headers:
            if name == b":status":
                status = value
            elif name == b"x-request-id":
                has_id = True
                kept.append(NeverIndexedHeaderTuple(name, value))
                continue
            elif name in HOP_BY_HOP:
                continue  # HTTP/2 forbids them; h2 does not check a replica's (see H2Peer)
            kept.append((name, value))
        if not (len(status) == 3 and status.isdigit()):  # h2 leaves a replica's head to us
            where = self.upstream.endpoint if self.upstream is not None else "?"
            self.respond_error(
                502, f"Replica {where} answered without a valid :status ({status!r}): not HTTP/2"
            )
            return
        self.response_started = True
        self.ended = end
        self.status = int(status)
        if self.record is not None:
            self.record.status = self.status
        if not has_id and self.request_id:
            kept.append(NeverIndexedHeaderTuple(b"x-request-id", self.request_id))
        self._client_headers(kept, end=end)

    def response_data(self, data: bytes, size: int) -> None:
        if self.clock is not None:
            self.last_byte = self.clock()  # for idleTimeoutSeconds
        outbox = self.client.outboxes.get(self.stream_id) or Outbox()
        outbox.chunks.append(data)
        self.client.send(self.stream_id, outbox)
        if self.upstream is not None:
            self.upstream.acknowledge(size, self.upstream_id)

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        outbox = self.client.outboxes.get(self.stream_id) or Outbox()
        outbox.trailers = list(headers)
        self.client.send(self.stream_id, outbox)

    def response_complete(self) -> None:
        if self.state:
            return
        outbox = self.client.outboxes.get(self.stream_id) or Outbox()
        if outbox.trailers is None and not self.ended:
            outbox.end = True
            self.client.send(self.stream_id, outbox)
        self.upstream = None
        self._finish()

    def _client_headers(self, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        client = self.client
        if client.closed:
            return
        try:
            client.conn.send_headers(self.stream_id, headers, end_stream=end)
        except H2Error:
            return  # the client reset the stream meanwhile
        client.flush()

    # -- failures -----------------------------------------------------------------------------
    def respond_error(self, status: int, message: str) -> None:
        """Answer with the gateway's own error (as a gRPC status to a gRPC client), or reset the
        stream if the response has begun."""
        if self.state:
            return
        self._drop_upstream()
        client = self.client
        if self.response_started:
            if not client.closed:
                try:
                    client.conn.reset_stream(self.stream_id, ErrorCodes.INTERNAL_ERROR)
                except H2Error:
                    pass
                client.flush()
        else:
            self.status = status
            if self.record is not None:
                self.record.status = status
            headers = [(b"x-request-id", self.request_id)] if self.request_id else []
            if self.grpc:
                headers[:0] = [(b":status", b"200"), (b"content-type", b"application/grpc")]
                headers += (
                    (b"grpc-status", b"%d" % GRPC_CODES.get(status, 2)),
                    (b"grpc-message", quote(message, safe=" ").encode()),
                )
                self._client_headers(headers, end=True)
            else:
                body = message.encode() + b"\n"
                headers[:0] = [
                    (b":status", b"%d" % status),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(body)),
                ]
                self._client_headers(headers, end=False)
                outbox = Outbox()
                outbox.chunks.append(body)
                outbox.end = True
                client.send(self.stream_id, outbox)
        self._finish()

    def upstream_reset(self, error_code: int) -> None:
        """The replica reset the stream: pass the reset on to the client."""
        self.upstream = None
        if self.state:
            return
        if not self.response_started:
            self.respond_error(
                502,
                f"Revision {self.revision.name} replica {self.replica.endpoint} reset the "
                f"stream (HTTP/2 error code {error_code})",
            )
            return
        self.respond_error(502, "")

    def upstream_lost(self, upstream: H2Upstream, exc: Exception | None) -> None:
        """The replica's connection closed under this stream."""
        self.upstream = None
        if self.state:
            return
        detail = f": {exc}" if exc else ""
        self.respond_error(
            502,
            f"Revision {self.revision.name} replica {upstream.endpoint} closed the HTTP/2 "
            f"connection{detail}",
        )

    def abort(self) -> None:
        """The client reset the stream or went away."""
        if self.state:
            return
        self._drop_upstream()
        self._finish()

    def _drop_upstream(self) -> None:
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.cancel(self.upstream_id)

    def _finish(self) -> None:
        self.state = 1
        self.client.stream_done(self.stream_id)
        if self.record is not None:
            self.client.telemetry.finished(self)  # type: ignore[arg-type]
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.revision is not None:
            self.revision.release(self, None)
