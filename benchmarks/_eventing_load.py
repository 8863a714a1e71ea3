"""The eventing benchmark's two helpers on the client core: the trivial subscriber and the senders.

The subscriber counts each (path, event id) once, so that with many triggers each trigger's
delivery of an event counts (triggers subscribe at different paths), and keeps each delivery's
latency from the event's `ce-senttime`. The senders keep HTTP/1.1 connections alive and POST the
next event as soon as the last was answered.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

TYPES = 10  # events carry type bench.tick.0 .. bench.tick.9, for triggers to filter on


# -- the trivial subscriber ------------------------------------------------------------------------
def serve_sink(port: int) -> None:
    """Answers every POST with 200 and keeps, per (path, event id), the latency from its
    `ce-senttime`; `GET /stats` returns {"count": n, "latencies": [...]}, `DELETE /` forgets them."""
    import httptools
    import uvloop

    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    latencies: list[float] = []
    seen: set[bytes] = set()

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.sent: float | None = None
            self.id = self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url = url

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_header(self, name: bytes, value: bytes) -> None:
            name = name.lower()
            if name == b"ce-senttime":
                self.sent = float(value)
            elif name == b"ce-id":
                self.id = value

        def on_message_complete(self) -> None:
            method = self.parser.get_method()
            if method == b"GET":
                body = json.dumps({"count": len(latencies), "latencies": latencies}).encode()
                self.transport.write(  # type: ignore[attr-defined]
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                return
            if method == b"DELETE":
                latencies.clear()
                seen.clear()
            elif self.sent is not None and (key := self.url + b" " + self.id) not in seen:
                seen.add(key)  # at least once: each trigger's delivery counts once
                latencies.append(time.monotonic() - self.sent)
            self.sent = None
            self.transport.write(ok)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


# -- the load generator ----------------------------------------------------------------------------
class _Done:
    def __init__(self) -> None:
        self.done = False

    def on_message_complete(self) -> None:
        self.done = True


async def send_events(
    port: int, path: str, count: int, senders: int, run: str, rate: float | None = None
) -> float:
    """POST `count` events with `senders` keep-alive connections, as fast as they are accepted or
    (`rate`) event n at start + n/rate; seconds until the last 202."""
    import httptools

    todo = collections.deque(range(count))
    start = time.monotonic()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while todo:
                n = todo.popleft()
                if rate is not None and (wait := start + n / rate - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                body = b'{"n": %d}' % n
                writer.write(
                    (
                        f"POST {path} HTTP/1.1\r\nhost: broker\r\nce-specversion: 1.0\r\n"
                        f"ce-id: {run}-{n}\r\nce-source: /bench\r\nce-type: bench.tick.{n % TYPES}\r\n"
                        f"ce-senttime: {time.monotonic():.6f}\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(body)}\r\n\r\n"
                    ).encode()
                    + body
                )
                done = _Done()
                parser = httptools.HttpResponseParser(done)
                while not done.done:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise RuntimeError("the ingress closed the connection")
                    parser.feed_data(chunk)
                if parser.get_status_code() not in (200, 202):  # the sink (a ceiling) says 200
                    raise RuntimeError(f"the ingress answered {parser.get_status_code()}")
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(senders)))
    return time.monotonic() - start


def run_uvloop(coroutine: object) -> float:
    """The load generator on uvloop (the cheaper loop, so the client side is not the limit)."""
    import uvloop

    return uvloop.run(coroutine)  # type: ignore[arg-type,no-any-return]
