"""Responses delimited by closing the connection, relayed whole by the gateway.

A response with neither Content-Length nor chunked framing ends when the server closes the
connection (RFC 9112 §6.3, rule 8): HTTP/1.0 servers, `python3 -m http.server` handlers and many
small CGI-style apps answer so. The gateway reads such a body to the end, re-frames it for its
client (chunked to HTTP/1.1, close-delimited to HTTP/1.0), and never pools the closed connection.
A connection reset in the middle is not an end: the client is cut off.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import httpx
import pytest
from gateway_fixtures import HOST, event_loop_policy, raw_upstream, routed_gateway

# Larger than every socket buffer on the way, so the body crosses many reads and writes.
LARGE = 8 * 1024 * 1024
HEADS = {
    "http-1.0": b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n",
    "http-1.1-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n",
}
__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop


def body_of(size: int) -> bytes:
    """`size` bytes that are not all alike, so a lost or repeated piece shows."""
    pattern = bytes(range(256)) * 4 + b"knserve"
    return (pattern * (size // len(pattern) + 1))[:size]


def close_delimited(head: bytes, body: bytes):
    async def handler(
        request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(head)
        for start in range(0, len(body), 256 * 1024):
            writer.write(body[start : start + 256 * 1024])
            await writer.drain()
        writer.close()  # the end of the body

    return handler


@pytest.mark.parametrize("head", HEADS.values(), ids=HEADS.keys())
@pytest.mark.parametrize("size", [5, LARGE], ids=["small", "8MB"])
async def test_a_close_delimited_response_reaches_an_http_1_1_client_whole_and_chunked(
    head: bytes, size: int
) -> None:
    body = body_of(size)
    async with (
        raw_upstream(close_delimited(head, body)) as upstream,
        routed_gateway(upstream.endpoint) as gateway,
        httpx.AsyncClient(headers={"Host": HOST}, timeout=30) as client,
    ):
        url = f"http://127.0.0.1:{gateway.port}/file"
        first = await client.get(url)
        second = await client.get(url)
    for response in (first, second):
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert len(response.content) == size
        assert response.content == body
    # The closed connection was not pooled: the second request came on a new one.
    assert upstream.connections == 2
    assert len(upstream.heads) == 2


async def test_a_close_delimited_response_reaches_an_http_1_0_client_delimited_by_close() -> None:
    body = body_of(LARGE)
    async with (
        raw_upstream(close_delimited(HEADS["http-1.0"], body)) as upstream,
        routed_gateway(upstream.endpoint) as gateway,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(f"GET /file HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    head, received = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert received == body


async def test_a_reset_in_a_close_delimited_body_cuts_the_client_off() -> None:
    async def reset(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        writer.write(HEADS["http-1.0"] + b"only part of it")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0: close sends RST, not FIN, so the gateway sees a reset rather than an end.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with (
        raw_upstream(reset) as upstream,
        routed_gateway(upstream.endpoint) as gateway,
        httpx.AsyncClient(headers={"Host": HOST}, timeout=10) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{gateway.port}/file")
