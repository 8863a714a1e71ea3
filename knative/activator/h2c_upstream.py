"""HTTP/2 cleartext (h2c) connections to replicas, each carrying many streams at once.

A revision whose container port is named `h2c` (Knative's rule; a gRPC server) is reached over
HTTP/2 with prior knowledge, as Knative's activator and queue-proxy reach it. One `H2Upstream` is a
connection to a replica driven by the `h2` library's state machine; every stream on it belongs to
one `H2Stream` (`knserve.knative.activator.h2c`), a client's request.

`H2Upstreams` keeps the gateway's connections by endpoint and hands a stream the first one with a
free stream slot (the replica's SETTINGS_MAX_CONCURRENT_STREAMS), opening another only when all are
full: a replica at concurrency 64 is served by one connection, as a gRPC client would use it.

Both directions follow HTTP/2 flow control: bytes wait in an `Outbox` until the peer's window takes
them, and received bytes are acknowledged once passed on, so a slow reader slows its writer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from h2 import events
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from h2.settings import SettingCodes
from hpack import Encoder

if TYPE_CHECKING:
    from knserve.knative.activator.h2c import H2Stream

# Windows the gateway grants its peers: large enough that a unary gRPC call never waits on them.
WINDOW = 4 * 1024 * 1024
WINDOW_SETTINGS: dict[SettingCodes | int, int] = {
    SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
    SettingCodes.ENABLE_PUSH: 0,
}

# What a replica that does not speak HTTP/2 cleartext on its port most likely means.
NOT_H2 = (
    "HTTP/2 (gRPC) clients reach only revisions whose container port is named h2c and serves "
    "HTTP/2 cleartext"
)
UpstreamDone = Callable[["H2Upstream | None", "BaseException | None"], None]


def start(conn: H2Connection) -> None:
    """Send the connection preface with the gateway's windows."""
    conn.initiate_connection()
    conn.update_settings(WINDOW_SETTINGS)
    conn.increment_flow_control_window(WINDOW)


class LiteralEncoder(Encoder):
    """HPACK without Huffman coding: on loopback and a cluster's network the bytes it saves cost
    more CPU than they are worth (pure Python, a fifth of a forwarded call's header work)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class Outbox:
    """One stream's bytes to send on one connection: data chunks, then its end or its trailers."""

    __slots__ = ("chunks", "end", "trailers")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.end = False  # end the stream once the chunks are out
        self.trailers: list[tuple[bytes, bytes]] | None = None

    def pump(self, conn: H2Connection, stream_id: int) -> bool:
        """Send what the stream's window allows; True once everything, end included, is sent."""
        chunks = self.chunks
        while chunks:
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                return False
            chunk = chunks[0]
            if len(chunk) > window:
                conn.send_data(stream_id, chunk[:window])
                chunks[0] = chunk[window:]
                continue
            chunks.popleft()
            last = not chunks and self.end and self.trailers is None
            conn.send_data(stream_id, chunk, end_stream=last)
            if last:
                self.end = False
                return True
        if self.trailers is not None:
            conn.send_headers(stream_id, self.trailers, end_stream=True)
            self.trailers = None
            self.end = False
            return True
        if self.end:
            conn.end_stream(stream_id)
            self.end = False
            return True
        return False


class H2Peer(asyncio.Protocol):
    """One end of an HTTP/2 connection the gateway holds: the `h2` state machine, its transport,
    and the streams' bytes waiting for the peer's flow-control window."""

    def __init__(self, client_side: bool) -> None:
        # Headers the gateway sends were validated when they came in (a client's by h2), or come
        # from a replica's own HTTP/2 server: h2 checking them again costs a third of a call. A
        # client's headers are checked (they become the request the gateway routes); a replica's
        # response is checked by the client that reads it, and the gateway drops its hop-by-hop
        # fields itself (`H2Stream.response_head`).
        config = H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=not client_side,
            normalize_inbound_headers=not client_side,
        )
        self.conn = H2Connection(config)
        self.conn.encoder = LiteralEncoder()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.outboxes: dict[int, Outbox] = {}
        self.closed = False
        self.flushing = False

    def flush(self) -> None:
        """Write what the state machine has for the peer, in one write per loop iteration: a
        call's headers, data and trailers, and the window updates, go out together."""
        if not self.flushing and not self.closed:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self.write_now)

    def write_now(self) -> None:
        """Write what the state machine has for the peer now."""
        self.flushing = False
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def send(self, stream_id: int, outbox: Outbox) -> None:
        """Send `outbox` as the window allows; the rest goes when the peer opens it."""
        if self.closed:
            return
        try:
            done = outbox.pump(self.conn, stream_id)
        except H2Error:
            done = True  # the peer reset the stream meanwhile
        if done:
            self.outboxes.pop(stream_id, None)
        else:
            self.outboxes[stream_id] = outbox
        self.flush()

    def window_opened(self, stream_id: int) -> None:
        """The peer's window grew (stream 0: the connection's): send what waited for it."""
        targets = list(self.outboxes) if stream_id == 0 else [stream_id]
        for sid in targets:
            outbox = self.outboxes.get(sid)
            if outbox is not None and outbox.pump(self.conn, sid):
                del self.outboxes[sid]


class H2Upstream(H2Peer):
    """One h2c connection to a replica, carrying the streams of many requests."""

    def __init__(self, endpoint: str, pool: H2Upstreams) -> None:
        super().__init__(client_side=True)
        self.endpoint = endpoint
        self.pool = pool
        self.streams: dict[int, H2Stream] = {}
        self.going_away = False  # GOAWAY received: no new streams
        self.spoken = False  # the replica has sent its HTTP/2 SETTINGS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        start(self.conn)
        self.flush()

    def has_room(self) -> bool:
        """Whether a new stream may open here now."""
        if self.closed or self.going_away:
            return False
        conn = self.conn
        return bool(conn.open_outbound_streams < conn.remote_settings.max_concurrent_streams)

    def open(self, stream: H2Stream, headers: list[tuple[bytes, bytes]]) -> int:
        """Start `stream`'s request here; its id on this connection."""
        conn = self.conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, headers)
        self.streams[stream_id] = stream
        return stream_id

    def cancel(self, stream_id: int) -> None:
        """The client gave up on the stream: reset it at the replica."""
        self.streams.pop(stream_id, None)
        self.outboxes.pop(stream_id, None)
        if not self.closed:
            try:
                self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            except H2Error:
                return  # already closed on both sides
            self.flush()
        self.pool.room(self)

    def acknowledge(self, size: int, stream_id: int) -> None:
        """The client took `size` bytes of the response: open the replica's window again."""
        if not self.closed and size:
            try:
                self.conn.acknowledge_received_data(size, stream_id)
            except H2Error:
                return
            self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            received = self.conn.receive_data(data)
        except H2Error as exc:
            self._fail(f"sent a malformed HTTP/2 frame ({exc}); {NOT_H2}")
            return
        for event in received:
            self._event(event)
        self.flush()

    def _event(self, event: events.Event) -> None:
        if isinstance(event, events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                stream.response_data(event.data, event.flow_controlled_length)
        elif isinstance(event, events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                # a trailers-only response (how gRPC answers an error) ends in its headers
                stream.response_head(event.headers, event.stream_ended is not None)
        elif isinstance(event, events.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.response_trailers(event.headers)
        elif isinstance(event, events.StreamEnded):
            self._ended(event.stream_id)
        elif isinstance(event, events.StreamReset):
            self.outboxes.pop(event.stream_id, None)
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.upstream_reset(int(event.error_code))
            self.pool.room(self)
        elif isinstance(event, events.WindowUpdated):
            self.window_opened(event.stream_id)
        elif isinstance(event, events.RemoteSettingsChanged):
            self.spoken = True  # an HTTP/2 server's first frame is its SETTINGS
            self.window_opened(0)
            self.pool.room(self)
        elif isinstance(event, events.ConnectionTerminated):
            self.going_away = True
            self.pool.forget(self)

    def _ended(self, stream_id: int) -> None:
        self.outboxes.pop(stream_id, None)
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.response_complete()
        self.pool.room(self)

    def _fail(self, why: str) -> None:
        self.transport.abort()
        self.connection_lost(ConnectionError(f"replica {self.endpoint} {why}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.pool.forget(self)
        if not self.spoken:
            how = f" ({exc})" if exc is not None else ""
            exc = ConnectionError(f"closed it without a word of HTTP/2{how}; {NOT_H2}")
        streams = list(self.streams.values())
        self.streams.clear()
        self.outboxes.clear()
        for stream in streams:
            stream.upstream_lost(self, exc)


class H2Upstreams:
    """The gateway's h2c connections to replicas, by endpoint, shared by all streams."""

    def __init__(self) -> None:
        self.open: dict[str, list[H2Upstream]] = {}
        # Streams waiting for a connection being opened (or for a free stream slot), by endpoint.
        self.waiting: dict[str, list[UpstreamDone]] = {}
        self.connecting: set[str] = set()
        self.tasks: set[asyncio.Task[Any]] = set()

    def get(self, endpoint: str, done: UpstreamDone) -> None:
        """Call `done(connection, None)` with a connection to `endpoint` that has room for a stream,
        or `done(None, error)` when the replica refuses a connection."""
        for upstream in self.open.get(endpoint, ()):
            if upstream.has_room():
                done(upstream, None)
                return
        self.waiting.setdefault(endpoint, []).append(done)
        if endpoint not in self.connecting:
            self.connecting.add(endpoint)
            task = asyncio.get_running_loop().create_task(
                self._connect(endpoint), name=f"knserve-gateway-h2c-{endpoint}"
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self, endpoint: str) -> None:
        host, _, port = endpoint.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: H2Upstream(endpoint, self), host.strip("[]"), int(port)
            )
        except (OSError, ValueError) as exc:
            self.connecting.discard(endpoint)
            for done in self.waiting.pop(endpoint, []):
                done(None, exc)
            return
        self.connecting.discard(endpoint)
        self.open.setdefault(endpoint, []).append(upstream)
        self.room(upstream)

    def room(self, upstream: H2Upstream) -> None:
        """A stream slot may have freed on `upstream`: give it to the streams waiting."""
        waiting = self.waiting.get(upstream.endpoint)
        while waiting and upstream.has_room():
            waiting.pop(0)(upstream, None)
        if waiting and upstream.endpoint not in self.connecting:
            # Every connection is full: open one more for the rest.
            done = waiting.pop(0)
            self.get(upstream.endpoint, done)
        elif not waiting:
            self.waiting.pop(upstream.endpoint, None)

    def forget(self, upstream: H2Upstream) -> None:
        """`upstream` takes no more streams (closed, or the replica said GOAWAY)."""
        found = self.open.get(upstream.endpoint)
        if found is not None and upstream in found:
            found.remove(upstream)
            if not found:
                del self.open[upstream.endpoint]
        if self.waiting.get(upstream.endpoint) and upstream.endpoint not in self.connecting:
            waiting = self.waiting.pop(upstream.endpoint)
            for done in waiting:
                self.get(upstream.endpoint, done)

    async def close(self) -> None:
        """Close every connection (the gateway is stopping)."""
        for task in list(self.tasks):
            task.cancel()
        for upstreams in list(self.open.values()):
            for upstream in list(upstreams):
                upstream.transport.close()
        self.open.clear()
        self.waiting.clear()
