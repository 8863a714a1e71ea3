"""The ingress's own HTTP/1.1 server on loopback, on raw sockets: what an ASGI client cannot
show (pipelining, Expect: 100-continue, a request that is not HTTP, a 413 before the body ends).
test_ingress.py runs every ingress test through this server as well."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httptools
import orjson
import pytest

from knserve.eventing.eventlog import EventLog
from knserve.eventing.ingress import Ingress
from knserve.eventing.ingress_server import IngressServer

HEAD = (
    "POST /default/orders HTTP/1.1\r\nhost: broker\r\nce-specversion: 1.0\r\nce-id: {id}\r\n"
    "ce-source: /shop\r\nce-type: order.created\r\ncontent-type: application/json\r\n"
    "content-length: {length}\r\n{extra}\r\n"
)


def request(event_id: str, body: bytes = b"{}", extra: str = "") -> bytes:
    return HEAD.format(id=event_id, length=len(body), extra=extra).encode() + body


class Answers:
    """Parses the answers on one connection, in order."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader, self.done = reader, []  # (status, body)
        self.parser = httptools.HttpResponseParser(self)
        self.body = b""

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self.body))
        self.body = b""

    async def next(self, count: int = 1) -> list[tuple[int, bytes]]:
        while len(self.done) < count:
            chunk = await self.reader.read(65536)
            assert chunk, "the ingress closed the connection before answering"
            self.parser.feed_data(chunk)
        answers, self.done = self.done[:count], self.done[count:]
        return answers


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[IngressServer]:
    log = EventLog(tmp_path / "events.db")
    log.add_trigger("t", "default", "orders")
    ingress = Ingress(log, lambda ns, name: (ns, name) == ("default", "orders"))
    ingress.max_body_bytes = 1024
    served = IngressServer(ingress, "127.0.0.1", 0)
    await served.start()
    yield served
    await served.stop()
    log.close()


async def connect(
    server: IngressServer,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Answers]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    return reader, writer, Answers(reader)


def stored(server: IngressServer) -> list[str]:
    return sorted(e.attributes["id"] for e in server.ingress.log.pending("t", 100))


async def test_pipelined_requests_are_answered_in_order(server: IngressServer) -> None:
    _, writer, answers = await connect(server)
    bad = request("3").replace(b"ce-specversion: 1.0\r\n", b"")
    writer.write(request("1") + request("2") + bad + request("4"))
    got = await answers.next(4)
    assert [status for status, _ in got] == [202, 202, 400, 202]
    assert b'missing required attribute \\"specversion\\"' in got[2][1]
    assert stored(server) == ["1", "2", "4"]
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body(server: IngressServer) -> None:
    reader, writer, answers = await connect(server)
    whole = request("c", b'{"n": 1}', extra="expect: 100-continue\r\n")
    head, body = whole[: whole.index(b"\r\n\r\n") + 4], whole[whole.index(b"\r\n\r\n") + 4 :]
    writer.write(head)
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    assert (await answers.next())[0][0] == 202
    writer.close()


async def test_a_request_that_is_not_http_is_400_and_closed(server: IngressServer) -> None:
    reader, writer, answers = await connect(server)
    writer.write(b"HELLO broker\r\n\r\n")
    ((status, body),) = await answers.next()
    assert status == 400
    assert orjson.loads(body)["error"].startswith("malformed HTTP/1.1 request")
    assert await reader.read() == b""  # closed
    writer.close()


async def test_a_body_over_the_limit_is_413_then_closed(server: IngressServer) -> None:
    reader, writer, answers = await connect(server)
    writer.write(request("big", b"x" * 5000))
    ((status, body),) = await answers.next()
    assert status == 413
    assert b"5000 bytes is over the broker's limit of 1024 bytes" in body
    assert await reader.read() == b""
    assert stored(server) == []
    writer.close()


async def test_stopping_answers_what_was_received(server: IngressServer) -> None:
    _, writer, answers = await connect(server)
    writer.write(request("last"))
    await writer.drain()
    while not server.ingress.group._items:  # the request has reached its group commit
        await asyncio.sleep(0)
    await server.stop()
    assert (await answers.next())[0][0] == 202
    assert stored(server) == ["last"]
    writer.close()
