"""The gateway against real replicas on the wire: streaming both ways, pooled connections,
forwarding headers, HTTP/1.0, pipelining, Expect: 100-continue, malformed requests and websockets.

The `gateway`, `endpoints`, `client` and `start_replica` fixtures are in conftest.py, the replicas
in tests/support/replica_fixtures.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets.asyncio.client
import websockets.exceptions
from gateway_fixtures import HOST, event_loop_policy
from net_fixtures import serve_in_loop
from replica_fixtures import serve, wait_until

from knserve.knative.activator.gateway import RouteSpec, TrafficTarget

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop


async def test_bodies_stream_both_ways(gateway, endpoints, start_replica) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = f"POST /echo-stream HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"
    writer.write(head.encode())
    received = b""
    for i in range(3):
        part = f"part{i};".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        # The next part is sent only after this one came back through the gateway.
        async with asyncio.timeout(5):
            while part not in received:
                received += await reader.read(65536)
    writer.write(b"0\r\n\r\n")
    async with asyncio.timeout(5):
        while not received.endswith(b"0\r\n\r\n"):
            received += await reader.read(65536)
    writer.close()
    assert b"transfer-encoding: chunked" in received.lower()


async def test_a_response_streams_before_it_is_complete(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    async with client.stream("GET", "/stream") as response:
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"first,"
        replica.gate.set()
        assert b"".join([c async for c in chunks]) == b"second"


async def test_a_large_body_round_trips_intact(gateway, endpoints, client, start_replica) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    payload = bytes(range(256)) * 16384  # 4 MiB

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    by_length = await client.post("/echo", content=payload)
    by_chunks = await client.post("/echo", content=chunked())
    assert by_length.content == payload
    assert by_chunks.content == payload
    assert replica.seen[0].headers["content-length"] == str(len(payload))
    assert replica.seen[1].headers["transfer-encoding"] == "chunked"


async def test_connections_to_a_replica_are_reused(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    for _ in range(20):
        assert (await client.get("/")).status_code == 200
    assert len({seen.client_port for seen in replica.seen}) == 1


class ClosingReplica(asyncio.Protocol):
    """Answers the first request of each connection, then closes the connection on the second
    without answering: a replica whose keep-alive timeout fires as the gateway reuses it."""

    connections = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ClosingReplica.connections += 1
        self.transport = transport
        self.requests = 0
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        self.buffer = b""
        self.requests += 1
        if self.requests == 1:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")  # type: ignore[attr-defined]
        else:
            self.transport.close()


async def test_a_request_on_a_stale_pooled_connection_is_sent_again(
    gateway, endpoints, client
) -> None:
    ClosingReplica.connections = 0
    server = await asyncio.get_running_loop().create_server(ClosingReplica, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        endpoints.ready[("default", "iris-1")] = (f"127.0.0.1:{port}",)
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        assert [(await client.get("/")).status_code for _ in range(3)] == [200, 200, 200]
        assert ClosingReplica.connections == 3
        # A request with a body is not sent twice: the replica may have acted on it.
        response = await client.post("/", content=b"payload")
        assert response.status_code == 502
        assert "closed the connection" in response.text
    finally:
        server.close()


async def test_forwarding_headers_are_added_as_knative_does(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    await client.get("/")
    await client.get("/", headers={"X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.1"})
    first, second = replica.seen[0].headers, replica.seen[1].headers
    assert first["x-forwarded-for"] == "127.0.0.1"
    assert first["forwarded"] == "for=127.0.0.1;proto=http"
    assert first["x-forwarded-proto"] == "http"
    assert first["host"] == HOST
    assert second["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert second["forwarded"] == "for=10.0.0.1, for=127.0.0.1;proto=http"


async def test_head_and_204_responses_have_no_body(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    head = await client.head("/")
    empty = await client.get("/empty")
    after = await client.get("/after")
    assert (head.status_code, head.content) == (200, b"")
    assert (empty.status_code, empty.content) == (204, b"")
    assert after.text == "a /after"


async def test_pipelined_requests_are_answered_in_order(gateway, endpoints, start_replica) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    requests = (
        b"".join(f"GET /p{i} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode() for i in range(3))
        + f"GET /last HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    )
    writer.write(requests)
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 4
    positions = [raw.index(body) for body in (b"a /p0", b"a /p1", b"a /p2", b"a /last")]
    assert positions == sorted(positions)


async def test_an_http_1_0_client_gets_its_answer_and_the_connection_closed(
    gateway, endpoints, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(f"GET /old HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in raw.lower()
    assert raw.endswith(b"\r\n\r\na /old")


async def test_an_http_1_0_client_gets_a_streamed_body_delimited_by_close(
    gateway, endpoints, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    replica.gate.set()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(f"GET /stream HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"first,second"


async def test_expect_100_continue_is_answered_by_the_gateway(
    gateway, endpoints, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        f"POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n".encode()
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert "expect" not in replica.seen[0].headers


async def test_a_malformed_request_gets_400(gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Malformed HTTP request" in raw


async def test_websockets_are_tunnelled_to_the_replica(gateway, endpoints) -> None:
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo " + message["text"]})

    async with serve_in_loop(echo, log_level="warning") as url:
        port = int(url.rsplit(":", 1)[1])
        endpoints.ready[("default", "iris-1")] = (f"127.0.0.1:{port}",)
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        async with websockets.asyncio.client.connect(f"ws://{HOST}/ws", sock=sock) as ws:
            for text in ("one", "two"):
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), 5) == "echo " + text
            assert gateway.stats("default", "iris-1").in_flight == 1
        await wait_until(lambda: gateway.stats("default", "iris-1").in_flight == 0)
        # A refused upgrade is an ordinary error response.
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        with pytest.raises(websockets.exceptions.InvalidStatus, match="404"):
            async with websockets.asyncio.client.connect(
                "ws://nosuch.default.localhost/", sock=sock
            ):
                pass
