"""The HTTP side of delivery: one event POSTed to a URL, and what came back.

:class:`MessageSender` (as Knative's ``pkg/kncloudevents`` message sender) encodes the event in
binary mode, or structured for ``spec.delivery.format: json``, asks for a reply with ``Prefer:
reply``, bounds the attempt by the delivery's timeout and reads at most the ingress's body limit
of the answer; no answer at all (refused, reset, timed out) is an :class:`Answer` whose status is
None, for the back-off to decide on like any other failure.

The wire: given a :class:`LeanSender`, plain ``http://`` deliveries go out on its keep-alive
HTTP/1.1 connections (asyncio protocol, httptools parser: one write per request, no per-request
pool scan), which costs a fraction of httpx's client and pool per request (httpcore polls every
pooled socket on each request). Anything it does not take -- HTTPS, a URL with credentials, a
header it will not write -- goes through the httpx ``client``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx

from knserve.eventing.backoff import DeliverySpec, parse_retry_after
from knserve.eventing.encoding import to_binary, to_structured
from knserve.eventing.ingress import MAX_BODY_BYTES

__all__ = ["Answer", "LeanSender", "MessageSender"]


@dataclass(frozen=True)
class Answer:
    """What a URL answered to one POSTed event."""

    status: int | None  # None: no answer (refused, reset, timed out)
    body: bytes
    headers: Mapping[str, str]
    retry_after: float | None = None
    truncated: bool = False  # the body was longer than the ingress takes; cut there


class MessageSender:
    """Sends events: through ``lean`` when it takes the URL, through ``client`` otherwise (the
    plane's client routes ``*.localhost`` hosts through the gateway). ``clock`` (Unix seconds)
    dates a ``Retry-After``; ``default_timeout`` bounds an attempt whose delivery sets none."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        lean: LeanSender | None,
        clock: Callable[[], float],
        default_timeout: float,
    ) -> None:
        self.client, self.lean, self.clock = client, lean, clock
        self.default_timeout = default_timeout

    async def send(
        self,
        url: str,
        attributes: Mapping[str, Any],
        data: bytes | None,
        delivery: DeliverySpec,
        trace: Mapping[str, str] | None = None,
    ) -> Answer:
        """POST the event to ``url`` as ``delivery`` says (format, timeout), with the ``trace``
        headers (``traceparent`` …): the answer, or why there was none (status None, the reason
        in the body)."""
        encode = to_structured if delivery.format == "json" else to_binary
        headers, body = encode(attributes, data)
        headers["prefer"] = "reply"
        if trace:
            headers.update(trace)
        timeout = delivery.timeout or self.default_timeout
        lean = self.lean
        request = lean.prepare(url, headers, body) if lean is not None else None
        exchange: tuple[int, Mapping[str, str], bytes, bool]
        try:
            if lean is not None and request is not None:
                exchange = await lean.send(request, MAX_BODY_BYTES, timeout)
            else:
                async with asyncio.timeout(timeout):
                    exchange = await self._post(url, headers, body, timeout)
        except TimeoutError:
            return Answer(None, f"dispatch error: no answer within {timeout:g}s".encode(), {})
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            return Answer(None, f"dispatch error: {type(exc).__name__}: {exc}".encode(), {})
        status, response_headers, content, truncated = exchange
        retry_after = parse_retry_after(response_headers.get("retry-after"), self.clock())
        return Answer(status, content, response_headers, retry_after, truncated)

    async def _post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> tuple[int, Mapping[str, str], bytes, bool]:
        """Through httpx: status, headers, body (cut at the ingress's limit), whether cut."""
        response = await self.client.send(
            self.client.build_request("POST", url, headers=headers, content=body, timeout=timeout),
            stream=True,
        )
        try:
            content, truncated = await _read(response, MAX_BODY_BYTES)
        finally:
            await response.aclose()
        return response.status_code, response.headers, content, truncated

    def close(self) -> None:
        """Close the lean sender's idle connections (the httpx client is its owner's)."""
        if self.lean is not None:
            self.lean.close()


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body, and whether it was cut at ``limit`` bytes (a reply larger than the ingress
    takes is refused; a failed body only feeds knativeerrordata, 1,024 bytes of it)."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f]")  # CR, LF, NUL …: never written raw
# keep-alive connections kept per (host, port); more are closed. Many triggers usually share one
# origin (the gateway, or one subscriber host), each with up to 16 deliveries in flight: a
# connect per delivery was the largest single cost with 100 triggers, below 1024 files (ulimit).
MAX_IDLE_PER_ORIGIN = 256


@dataclass(frozen=True)
class _Request:
    origin: tuple[str, int]  # where to connect: the server, or the proxy for its host
    data: bytes  # the whole request, head and body, written at once


class LeanSender:
    """POSTs over keep-alive HTTP/1.1 connections of its own: an asyncio protocol per connection,
    httptools to parse the answer, the request written in one piece. It takes ``http://`` URLs
    without credentials whose headers are printable ASCII (:meth:`prepare` says None to anything
    else, for httpx to send).

    ``proxies`` maps a host suffix (``".localhost"``) to the HTTP proxy for those hosts
    (``"http://127.0.0.1:8080"``, the plane's gateway), which then gets the request in absolute
    form, as httpx sends it to a proxy. A connection the server closed while idle is noticed by
    the event loop and never reused; if a reused connection fails before any answer arrives, the
    request is sent once more on a fresh one (delivery is at least once anyway).
    """

    def __init__(
        self, proxies: Mapping[str, str] | None = None, max_idle: int = MAX_IDLE_PER_ORIGIN
    ) -> None:
        self.proxies: dict[str, tuple[str, int]] = {}
        for suffix, proxy in (proxies or {}).items():
            parts = urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"proxy {proxy!r} for {suffix!r}: give an http://host:port URL")
            self.proxies[suffix] = (parts.hostname, parts.port or 80)
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._targets: dict[str, tuple[tuple[str, int], bytes, bytes] | None] = {}
        # Exchanges with a deadline, and one timer for the soonest: a timer per request was a
        # visible share of a delivery's cost, and deadlines come in the order requests start.
        self._busy: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def prepare(self, url: str, headers: Mapping[str, str], body: bytes) -> _Request | None:
        """The request, ready to send; None when httpx should send it instead."""
        target = self._targets.get(url)
        if target is None and url not in self._targets:
            if len(self._targets) > 1024:
                self._targets.clear()  # subscriber URLs are few; this only bounds a leak
            target = self._targets[url] = self._target(url)
        if target is None:
            return None
        origin, start, host = target
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        raw = "".join(headers.values()) + "".join(headers)
        if _UNSAFE_HEADER.search(raw) or not lines.isascii():
            return None
        head = b"%s\r\nhost: %s\r\ncontent-length: %d\r\n%s\r\n" % (
            start,
            host,
            len(body),
            lines.encode("ascii"),
        )
        return _Request(origin, head + body)

    def _target(self, url: str) -> tuple[tuple[str, int], bytes, bytes] | None:
        try:
            parts = urlsplit(url)
            port = parts.port or 80
        except ValueError:
            return None
        host = parts.hostname
        if parts.scheme != "http" or not host or "@" in parts.netloc or not url.isascii():
            return None
        if _UNSAFE_HEADER.search(url) or " " in url:
            return None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = next((p for suffix, p in self.proxies.items() if host.endswith(suffix)), None)
        start = f"POST {f'http://{parts.netloc}{path}' if proxy else path} HTTP/1.1".encode()
        return proxy or (host, port), start, parts.netloc.encode()

    async def send(
        self, request: _Request, limit: int, timeout: float | None = None
    ) -> tuple[int, dict[str, str], bytes, bool]:
        """Status, headers (lowercase names), body (cut at ``limit`` bytes) and whether it was
        cut. Raises OSError (ConnectionError) when there is no answer, TimeoutError when there
        is none within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        idle = self._idle.get(request.origin)
        while idle:
            connection = idle.pop()
            if connection.usable():
                try:
                    return await self._exchange(connection, request, limit, deadline)
                except ConnectionError:
                    if connection.answered:
                        raise
                    break  # closed under us before answering: once more, on a fresh one
        async with asyncio.timeout_at(deadline):
            _, connection = await loop.create_connection(_Connection, *request.origin)
        return await self._exchange(connection, request, limit, deadline)

    async def _exchange(
        self, connection: _Connection, request: _Request, limit: int, deadline: float | None
    ) -> tuple[int, dict[str, str], bytes, bool]:
        if deadline is not None:
            connection.deadline = deadline
            self._busy.add(connection)
            if self._sweep is None or deadline < self._sweep.when():
                self._expire_at(deadline)
        try:
            answer = await connection.exchange(request.data, limit)
        except BaseException:
            connection.close()  # cancelled, failed or timed out mid-exchange: state unknown
            raise
        finally:
            self._busy.discard(connection)
        if connection.usable():
            idle = self._idle.setdefault(request.origin, [])
            if len(idle) < self.max_idle:
                idle.append(connection)
            else:
                connection.close()
        return answer

    def _expire_at(self, when: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        """Fail the exchanges past their deadline; wake again at the soonest other one."""
        self._sweep = None
        now = asyncio.get_running_loop().time() + 0.001  # a timer may fire a little early
        for connection in [c for c in self._busy if c.deadline <= now]:
            self._busy.discard(connection)
            connection.expire()
        if self._busy:
            self._expire_at(min(c.deadline for c in self._busy))

    def close(self) -> None:
        """Close the idle connections (the sender stays usable: it opens new ones)."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _Connection(asyncio.Protocol):
    """One client connection: one exchange at a time, parsed by httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answered = False  # some of an answer arrived during the current exchange
        self._waiter: asyncio.Future[tuple[int, dict[str, str], bytes, bool]] | None = None
        self._keep_alive = False
        self.deadline = 0.0  # the loop time the current exchange must end by (LeanSender's)
        # one parser per connection: llhttp starts over after each answer
        self._parser = httptools.HttpResponseParser(self)

    # -- the exchange --
    async def exchange(self, data: bytes, limit: int) -> tuple[int, dict[str, str], bytes, bool]:
        if self.closed or self.transport is None:
            raise ConnectionResetError("the connection is closed")
        self._reset(limit)
        self.answered = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def usable(self) -> bool:
        return not self.closed and self._keep_alive and self._waiter is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _reset(self, limit: int) -> None:
        self._limit = limit
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._status = 0
        self._headers_done = False
        self._keep_alive = False

    def _finish(self, truncated: bool = False) -> None:
        if self._waiter is not None and not self._waiter.done():
            answer = (self._status, self._headers, b"".join(self._body), truncated)
            self._waiter.set_result(answer)

    def expire(self) -> None:
        self._fail(TimeoutError("no answer in time"))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # typeshed types it BaseTransport; a TCP connection's is a Transport, which uvloop's
        # TCPTransport is without subclassing it, so isinstance cannot narrow it here.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"the server's answer is not valid HTTP/1.1: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            # an answer without a length ends when the connection does
            delimited = "content-length" in self._headers or "chunked" in self._headers.get(
                "transfer-encoding", ""
            )
            if self._headers_done and not delimited:
                self._finish()
            else:
                self._waiter.set_exception(
                    ConnectionResetError(f"the server closed the connection ({exc or 'EOF'})")
                )

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = self._status >= 200

    def on_body(self, body: bytes) -> None:
        if self.closed:
            return  # cut already
        self._body.append(body)
        self._size += len(body)
        if self._size > self._limit:
            self._body = [b"".join(self._body)[: self._limit]]
            self._finish(truncated=True)
            self.close()  # the rest is not wanted: this connection is done

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers, self._headers_done = {}, False
            return
        self._keep_alive = self._parser.should_keep_alive()
        self._finish()
