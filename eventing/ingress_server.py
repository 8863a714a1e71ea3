"""The broker ingress's own HTTP/1.1 server: httptools on an asyncio protocol, no ASGI between.

Accepting an event is a small amount of work (decode, one share of a group commit), so the
per-request machinery of an ASGI server -- a scope, a task, receive/send messages, header lists
-- was most of the ingress's cost in the profile. Here each connection parses with httptools
(llhttp) and hands a finished request straight to :class:`~knserve.eventing.ingress.Ingress`'s
steps: :meth:`~Ingress.admit` when the head is complete (so a wrong method, path, broker or a
Content-Length over the limit is answered without reading the body), then
:meth:`~Ingress.prepare` and :meth:`~Ingress.submit` when the body is, and the answer is written
when the group commit is done (:meth:`~Ingress.settle`), with no task per request. The answers,
their status codes and error messages are the ASGI app's (``Ingress.__call__``), which stays for
embedding.

Requests on one connection are answered in order (pipelining works; reading pauses while
``PIPELINE`` answers wait). A body over the limit is answered 413 as soon as it crosses it and
the connection is closed, as is one that is not HTTP/1.1. ``Expect: 100-continue`` is honoured.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections import deque
from urllib.parse import unquote

import httptools
import orjson

from knserve.eventing.ingress import Ingress, Rejected, Request, header_value

__all__ = ["IngressServer"]

PIPELINE = 16  # answers waiting on one connection before it stops reading
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"


def _response(status: int, message: str, keep_alive: bool) -> bytes:
    """The ASGI app's answer, as bytes: ``{"error": message}`` when there is a message."""
    if status == 202 and not message and keep_alive:
        return _ACCEPTED
    body = orjson.dumps({"error": message}) if message else b""
    head = b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n" % (
        status,
        http.HTTPStatus(status).phrase.encode(),
        len(body),
    )
    if status == 405:
        head += b"allow: POST\r\n"
    if body:
        head += b"content-type: application/json\r\n"
    if not keep_alive:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body


class _Answer:
    """One request's place in its connection's answer order."""

    __slots__ = ("close", "data", "keep_alive")

    def __init__(self, keep_alive: bool, data: bytes | None = None) -> None:
        self.keep_alive, self.data = keep_alive, data
        self.close = not keep_alive


class _Connection(asyncio.Protocol):
    def __init__(self, server: IngressServer) -> None:
        self.ingress, self.connections = server.ingress, server.connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.answers: deque[_Answer] = deque()
        self.closed = self.paused = self.done = False
        self._begin()

    def _begin(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.target: tuple[str, str] | None = None
        self.refused: Rejected | None = None
        self.answered = False  # refused and answered before the body ended (413)

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._last(None)  # the ingress speaks HTTP/1.1 only: what follows is not for it
        except httptools.HttpParserError as exc:
            self._last(_response(400, f"malformed HTTP/1.1 request: {exc}", keep_alive=False))

    # -- httptools callbacks --
    def on_message_begin(self) -> None:
        self._begin()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = header_value(value)

    def on_headers_complete(self) -> None:
        parser = self.parser
        raw = self.url.split(b"?", 1)[0].decode("latin-1")
        path = unquote(raw) if "%" in raw else raw
        try:
            self.target = self.ingress.admit(parser.get_method().decode(), path, self.headers)
        except Rejected as exc:
            self.refused = exc
            if exc.status == 413:  # answered now: the body is not read, only let through
                self._refuse_early(exc)
            return
        if self.headers.get("expect", "").lower() == "100-continue" and not self.answers:
            self._write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.refused is not None:
            return  # answered without it
        self.size += len(body)
        if self.size > self.ingress.max_body_bytes:
            self._refuse_early(self.ingress.too_large(None))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.answered:  # a 413: closed once the sender has sent it all (a reset otherwise)
            self._last(None)
            return
        keep_alive = self.parser.should_keep_alive()
        answer = _Answer(keep_alive)
        self.answers.append(answer)
        refused, target = self.refused, self.target
        if refused is None and target is not None:
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            try:
                request = self.ingress.prepare(*target, self.headers, body)
            except Rejected as exc:
                refused = exc
            else:
                committed = self.ingress.submit(request)
                committed.add_done_callback(lambda done: self._settled(answer, request, done))
        if refused is not None:
            answer.data = _response(refused.status, refused.message, keep_alive)
            self._flush()
        if len(self.answers) >= PIPELINE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    # -- answers, in order --
    def _settled(
        self, answer: _Answer, request: Request, committed: asyncio.Future[list[bool]]
    ) -> None:
        if committed.cancelled():  # the server is stopping without committing: no answer
            answer.data, answer.close = b"", True
        else:  # settled even when the client has gone: the events are stored all the same
            answer.data = _response(*self.ingress.settle(request, committed), answer.keep_alive)
        self._flush()

    def _refuse_early(self, refused: Rejected) -> None:
        """Answer before the body ends, then close (``on_message_complete``): a client that
        writes its whole body before reading would see a reset if it were closed now."""
        self.refused, self.answered = refused, True
        answer = _Answer(False, _response(refused.status, refused.message, keep_alive=False))
        answer.close = False
        self.answers.append(answer)
        self._flush()

    def _last(self, data: bytes | None) -> None:
        """Answer ``data`` after what is queued, then close; read nothing more."""
        self.done = True
        self.answers.append(_Answer(False, data if data is not None else b""))
        self._flush()

    def _flush(self) -> None:
        answers, out, close = self.answers, list[bytes](), False
        while answers and (data := answers[0].data) is not None:
            answer = answers.popleft()
            out.append(data)
            if answer.close:
                close = True
                answers.clear()
                break
        if out:
            self._write(b"".join(out) if len(out) > 1 else out[0])
        if close and self.transport is not None:
            self.done = True
            self.transport.close()
        elif self.paused and len(answers) < PIPELINE and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def _write(self, data: bytes) -> None:
        if not self.closed and data and self.transport is not None:
            self.transport.write(data)


class IngressServer:
    """Serves an :class:`Ingress` on ``host:port`` until :meth:`stop`."""

    def __init__(self, ingress: Ingress, host: str, port: int) -> None:
        self.ingress, self.host, self.port = ingress, host, port
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (``port`` 0: on a free port, which ``port`` then says)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, answer what was received (its commit is flushed now), then close
        every connection."""
        if self._server is not None:
            self._server.close()
        self.ingress.group.flush()
        await asyncio.sleep(0)  # the commit's callbacks write their answers
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None
