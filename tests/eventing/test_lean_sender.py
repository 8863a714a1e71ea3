"""The dispatcher's lean HTTP/1.1 sender against a scripted loopback server: keep-alive reuse,
servers that close, answers without a length, chunked and oversized answers, proxies, timeouts,
and what it leaves to httpx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from knserve.eventing.message_sender import LeanSender

LIMIT = 1024


@dataclass
class Request:
    head: list[str]  # the request line, then the header lines
    body: bytes
    connection: int  # which connection (0, 1, …) carried it

    def header(self, name: str) -> str | None:
        for line in self.head[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        return None


Script = Callable[
    [Request, int], bytes | None
]  # (request, its number) -> raw answer, None: hang up
HOLD = b"(hold)"  # answer nothing and keep the connection open


@dataclass
class Server:
    script: Script
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")[:-2]
                except asyncio.IncompleteReadError:
                    return
                request = Request(head, b"", number)
                request.body = await reader.readexactly(int(request.header("content-length") or 0))
                self.requests.append(request)
                answer = self.script(request, len(self.requests))
                if answer is None:
                    return  # hang up without answering
                if answer == HOLD:
                    await asyncio.Event().wait()  # until the server closes
                writer.write(answer)
                await writer.drain()
                lowered = answer.lower()
                if b"connection: close" in lowered or not (
                    b"content-length" in lowered or b"chunked" in lowered or b" 204 " in answer
                ):
                    return
        finally:
            writer.close()


def ok(body: bytes = b"", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Server]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> Server:
        server = Server(script)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        server.port = listener.sockets[0].getsockname()[1]
        servers.append(listener)
        return server

    yield start  # type: ignore[misc]
    for listener in servers:
        listener.close()


async def post(sender: LeanSender, url: str, body: bytes = b"{}", **headers: str):  # type: ignore[no-untyped-def]
    request = sender.prepare(url, {"ce-id": "1", **headers}, body)
    assert request is not None
    return await sender.send(request, LIMIT)


async def test_requests_reuse_one_keep_alive_connection(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda r, n: ok(b"%d" % n, "x-answer: yes\r\n"))
    sender = LeanSender()
    url = f"http://127.0.0.1:{server.port}/events?x=1"
    answers = [await post(sender, url, b'{"n": %d}' % i) for i in range(5)]
    assert [a[0] for a in answers] == [200] * 5
    assert [a[2] for a in answers] == [b"1", b"2", b"3", b"4", b"5"]
    assert answers[0][1]["x-answer"] == "yes"
    assert server.connections == 1
    first = server.requests[0]
    assert first.head[0] == "POST /events?x=1 HTTP/1.1"
    assert first.header("host") == f"127.0.0.1:{server.port}"
    assert first.header("ce-id") == "1"
    assert first.body == b'{"n": 0}'
    sender.close()


async def test_a_connection_the_server_closes_is_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda r, n: ok(extra="connection: close\r\n"))
    sender = LeanSender()
    url = f"http://127.0.0.1:{server.port}/"
    for _ in range(3):
        assert (await post(sender, url))[0] == 200
    assert server.connections == 3


async def test_a_reused_connection_dropped_before_answering_is_retried_once_on_a_fresh_one(
    serve,
) -> None:  # type: ignore[no-untyped-def]
    # the second request arrives on the kept-alive connection, which the server then drops
    server = await serve(lambda r, n: None if n == 2 else ok())
    sender = LeanSender()
    url = f"http://127.0.0.1:{server.port}/"
    assert (await post(sender, url))[0] == 200
    assert (await post(sender, url))[0] == 200
    assert [r.connection for r in server.requests] == [0, 0, 1]
    # a fresh connection that is dropped is an error, not retried
    server.script = lambda r, n: None
    sender.close()
    with pytest.raises(ConnectionError):
        await post(sender, url)


async def test_answers_without_a_length_and_chunked_answers(serve) -> None:  # type: ignore[no-untyped-def]
    answers = {
        "/until-close": b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it",
        "/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        "/continue": b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"),
        "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    }
    server = await serve(lambda r, n: answers[r.head[0].split()[1]])
    sender = LeanSender()
    base = f"http://127.0.0.1:{server.port}"
    assert await post(sender, base + "/until-close") == (
        200,
        {"content-type": "text/plain"},
        b"all of it",
        False,
    )
    assert (await post(sender, base + "/chunked"))[2] == b"abcde"
    assert (await post(sender, base + "/continue"))[:3:2] == (200, b"after")
    assert (await post(sender, base + "/empty"))[:3:2] == (204, b"")
    assert (await post(sender, base + "/chunked"))[2] == b"abcde"  # the chunked one was kept


async def test_an_answer_over_the_limit_is_cut_and_its_connection_closed(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda r, n: ok(b"x" * (LIMIT * 3)))
    sender = LeanSender()
    status, _, body, truncated = await post(sender, f"http://127.0.0.1:{server.port}/")
    assert (status, len(body), truncated) == (200, LIMIT, True)
    await post(sender, f"http://127.0.0.1:{server.port}/")
    assert server.connections == 2


async def test_hosts_under_a_proxied_suffix_go_to_the_proxy_in_absolute_form(serve) -> None:  # type: ignore[no-untyped-def]
    proxy = await serve(lambda r, n: ok(b"via proxy"))
    sender = LeanSender(proxies={".localhost": f"http://127.0.0.1:{proxy.port}"})
    answer = await post(
        sender, "http://sklearn-iris.default.localhost/v1/models/sklearn-iris:predict"
    )
    assert answer[2] == b"via proxy"
    [request] = proxy.requests
    assert request.head[0] == (
        "POST http://sklearn-iris.default.localhost/v1/models/sklearn-iris:predict HTTP/1.1"
    )
    assert request.header("host") == "sklearn-iris.default.localhost"


async def test_a_silent_server_times_out_and_its_connection_is_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda r, n: HOLD if n == 1 else ok())
    sender = LeanSender()
    url = f"http://127.0.0.1:{server.port}/"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):  # the dispatcher's delivery timeout
            await post(sender, url)
    assert (await post(sender, url))[0] == 200
    assert [r.connection for r in server.requests] == [0, 1]


async def test_its_own_timeout_fails_only_the_late_exchange(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda r, n: HOLD if r.header("ce-id") == "slow" else ok())
    sender = LeanSender()
    url = f"http://127.0.0.1:{server.port}/"
    slow, quick = (sender.prepare(url, {"ce-id": i}, b"{}") for i in ("slow", "quick"))
    assert slow is not None and quick is not None
    late, prompt = await asyncio.gather(
        sender.send(slow, LIMIT, timeout=0.2),
        sender.send(quick, LIMIT, timeout=30.0),
        return_exceptions=True,
    )
    assert isinstance(late, TimeoutError)
    assert not isinstance(prompt, BaseException) and prompt[0] == 200
    assert (await sender.send(quick, LIMIT, timeout=0.2))[0] == 200  # the late one's is closed
    assert len(server.requests) == 3
    assert server.requests[2].connection != server.requests[0].connection


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://example.com/", {}),
        ("http://user:secret@example.com/", {}),
        ("ftp://example.com/", {}),
        ("http://example.com/", {"content-type": "text/plain\r\nx-injected: 1"}),
        ("http://example.com/", {"content-type": "text/plain; charset=\u00fc"}),
        ("http://ex\u00e4mple.com/", {}),
        ("http://example.com:notaport/", {}),
    ],
    ids=["https", "credentials", "ftp", "crlf", "non-ascii-header", "idna-host", "bad-port"],
)
def test_what_it_leaves_to_httpx(url: str, headers: dict[str, str]) -> None:
    assert LeanSender().prepare(url, headers, b"") is None


def test_a_proxy_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        LeanSender(proxies={".localhost": "https://gateway"})
