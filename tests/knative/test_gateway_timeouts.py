"""A revision's timeoutSeconds, responseStartTimeoutSeconds and idleTimeoutSeconds, against real slow
replicas: raw loopback servers that hold their head back, or trickle a body and then stall.

Knative's fields are whole seconds, so each test uses 1 s and waits for what the client sees (a 504,
or its connection cut), bounded well above it; the arithmetic at finer steps is in test_timeouts.py.
Every stalled replica waits for the gateway to drop its connection, which the tests await too.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from gateway_fixtures import HOST, event_loop_policy, raw_upstream, routed_gateway

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop

# How long a test waits for a 1 s limit to show: generous for a machine whose other core is busy.
BOUND = 15
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"


class Stalling:
    """A replica that writes `head`, then `chunks` body chunks `every` seconds apart, then stalls
    until the gateway drops the connection (`dropped` is set then)."""

    def __init__(self, head: bytes = b"", chunks: int = 0, every: float = 0.0) -> None:
        self.head = head
        self.chunks = chunks
        self.every = every
        self.dropped = asyncio.Event()

    async def __call__(
        self, request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            if self.head:
                writer.write(self.head)
            for index in range(self.chunks):
                await asyncio.sleep(self.every)  # the replica's own pace, which the test is about
                if reader.at_eof():
                    break
                chunk = b"chunk %d;" % index
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            await reader.read()  # returns when the gateway closes or resets the connection
        except ConnectionError:
            pass  # reset by the gateway while writing
        self.dropped.set()
        writer.close()


async def stream_until_cut(replica: Stalling, **timeouts: int) -> tuple[bytes, float]:
    """GET a stream from `replica` through a gateway with `timeouts`: the body the client got before
    its connection was cut, and the seconds that took. Fails if the response ends normally."""
    received = b""
    async with (
        raw_upstream(replica) as upstream,
        routed_gateway(upstream.endpoint, **timeouts) as gateway,
        httpx.AsyncClient(headers={"Host": HOST}, timeout=BOUND) as client,
        asyncio.timeout(BOUND),
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with client.stream("GET", f"http://127.0.0.1:{gateway.port}/stream") as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                async for chunk in response.aiter_raw():
                    received += chunk
        took = loop.time() - started
        await replica.dropped.wait()
        assert gateway.stats("default", "iris-1").in_flight == 0
    return received, took


async def get_from_silent_replica(**timeouts: int) -> tuple[httpx.Response, str]:
    """GET from a replica that never answers, through a gateway with `timeouts`: the response and
    the replica's endpoint, once the gateway has dropped its connection to the replica."""
    replica = Stalling()
    async with (
        raw_upstream(replica) as upstream,
        routed_gateway(upstream.endpoint, **timeouts) as gateway,
        httpx.AsyncClient(headers={"Host": HOST}, timeout=BOUND) as client,
        asyncio.timeout(BOUND),
    ):
        response = await client.get(f"http://127.0.0.1:{gateway.port}/silent")
        await replica.dropped.wait()
    return response, upstream.endpoint


async def test_timeout_seconds_cuts_a_response_that_has_begun() -> None:
    # Bytes keep coming every 0.2 s, so only the total duration can stop it.
    replica = Stalling(CHUNKED_HEAD, chunks=50, every=0.2)
    received, took = await stream_until_cut(replica, timeout_seconds=1, idle_timeout_seconds=1)
    assert received.startswith(b"chunk 0;")
    assert took >= 0.99


async def test_response_start_timeout_answers_504_with_knatives_body() -> None:
    response, endpoint = await get_from_silent_replica(
        timeout_seconds=60, response_start_timeout_seconds=1
    )
    assert response.status_code == 504
    assert response.text.startswith("activator request timeout: ")
    assert (
        "Revision default/iris-1 gave no response within its responseStartTimeoutSeconds (1s) "
        f"from replica {endpoint}" in response.text
    )


async def test_a_response_that_started_in_time_may_outlast_response_start_timeout() -> None:
    async def late_body(request: bytes, reader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1.5)  # the body comes after responseStartTimeoutSeconds has passed
        writer.write(b"done")
        await writer.drain()

    async with (
        raw_upstream(late_body) as upstream,
        routed_gateway(
            upstream.endpoint, timeout_seconds=60, response_start_timeout_seconds=1
        ) as gateway,
        httpx.AsyncClient(headers={"Host": HOST}, timeout=BOUND) as client,
    ):
        response = await client.get(f"http://127.0.0.1:{gateway.port}/late")
    assert (response.status_code, response.text) == (200, "done")


async def test_idle_timeout_lets_a_trickle_through_and_cuts_a_stall() -> None:
    # Six chunks 0.3 s apart take longer than idleTimeoutSeconds in all, but no gap reaches it.
    replica = Stalling(CHUNKED_HEAD, chunks=6, every=0.3)
    received, _ = await stream_until_cut(replica, timeout_seconds=60, idle_timeout_seconds=1)
    assert received.decode().count(";") == 6


async def test_idle_timeout_before_the_first_byte_answers_504() -> None:
    response, _ = await get_from_silent_replica(timeout_seconds=60, idle_timeout_seconds=1)
    assert response.status_code == 504
    assert "gave no response within its idleTimeoutSeconds (1s)" in response.text


async def test_an_http_1_0_client_cut_short_gets_a_reset_not_an_end() -> None:
    # Its body is delimited by the close, so a plain close would pass for a whole response.
    replica = Stalling(CHUNKED_HEAD, chunks=1, every=0.0)
    async with (
        raw_upstream(replica) as upstream,
        routed_gateway(upstream.endpoint, timeout_seconds=60, idle_timeout_seconds=1) as gateway,
        asyncio.timeout(BOUND),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(f"GET /stall HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"connection: close" in head.lower()
        assert await reader.readexactly(len(b"chunk 0;")) == b"chunk 0;"
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        await replica.dropped.wait()
