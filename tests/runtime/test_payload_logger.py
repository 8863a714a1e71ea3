"""The payload logger sends KServe's CloudEvents to a real sink and never blocks or grows unbounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from net_fixtures import free_port, serve_in_loop

from knserve.runtime.asgi import read_body
from knserve.runtime.payload_logger import (
    BACKOFF_CAP_SECONDS,
    BACKOFF_SECONDS,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    LoggerConfig,
    PayloadLogger,
)
from knserve.runtime.protocols.cloudevents_sdk import from_http


class Sink:
    """An ASGI CloudEvents sink that records what it receives; it can be told to stall."""

    def __init__(self) -> None:
        self.events: list = []
        self.received = asyncio.Event()
        self.stall = asyncio.Event()
        self.stall.set()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        await self.stall.wait()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.events.append(from_http(headers, body))
        self.received.set()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, str]]:
    app = Sink()
    async with serve_in_loop(app) as url:
        yield app, f"{url}/"
        app.stall.set()  # let held requests finish so the server can stop


async def wait_for_events(app: Sink, count: int) -> None:
    async with asyncio.timeout(10):
        while len(app.events) < count:
            app.received.clear()
            await app.received.wait()


async def test_request_and_response_arrive_as_kserve_cloudevents(sink: tuple[Sink, str]) -> None:
    app, url = sink
    logger = PayloadLogger(
        LoggerConfig(url=url, inference_service="iris", namespace="default", endpoint="default")
    )
    await logger.start()
    logger.log_request("req-1", "iris", b'{"instances": [[1, 2, 3, 4]]}', "application/json")
    logger.log_response("req-1", "iris", b'{"predictions": [1]}', "application/json")
    await wait_for_events(app, 2)
    await logger.close()
    by_type = {e["type"]: e for e in app.events}
    request, response = by_type[REQUEST_TYPE], by_type[RESPONSE_TYPE]
    assert request["id"] == response["id"] == "req-1"
    assert request["inferenceservicename"] == "iris"
    assert request["component"] == "predictor"
    assert request["modelname"] == "iris"
    assert request["namespace"] == "default"
    assert request.data == {"instances": [[1, 2, 3, 4]]}
    assert response.data == {"predictions": [1]}
    assert logger.stats.sent == 2 and logger.stats.failed == 0


@pytest.mark.parametrize(
    ("mode", "expected"), [("request", REQUEST_TYPE), ("response", RESPONSE_TYPE)]
)
async def test_mode_selects_what_is_logged(
    sink: tuple[Sink, str], mode: str, expected: str
) -> None:
    app, url = sink
    logger = PayloadLogger(LoggerConfig(url=url, mode=mode))
    await logger.start()
    logger.log_request("a", "m", b"{}", "application/json")
    logger.log_response("a", "m", b"{}", "application/json")
    await wait_for_events(app, 1)
    await logger.close()
    assert [e["type"] for e in app.events] == [expected]


async def test_a_stalled_sink_drops_and_counts_instead_of_queueing_without_bound(
    sink: tuple[Sink, str],
) -> None:
    app, url = sink
    app.stall.clear()
    logger = PayloadLogger(LoggerConfig(url=url, queue_size=5, workers=1, timeout=5.0))
    await logger.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(50):
        logger.log_request(str(i), "m", b"{}", "application/json")
    assert loop.time() - start < 0.5  # never blocked the caller
    await asyncio.sleep(0)  # let the one worker take its first event
    stats = logger.stats
    assert stats.dropped >= 50 - 5 - 1
    assert stats.queued + stats.dropped == 50
    app.stall.set()
    await logger.close(grace=5.0)
    assert logger.stats.sent == logger.stats.queued


async def test_a_sink_that_is_down_is_counted_as_failed_without_raising() -> None:
    logger = PayloadLogger(LoggerConfig(url=f"http://127.0.0.1:{free_port()}/", timeout=1.0))
    await logger.start()
    logger.log_request("x", "m", b"{}", "application/json")
    await logger.close(grace=5.0)
    assert logger.stats.failed == 1 and logger.stats.sent == 0


class Clock:
    """The logger's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def logger_on_clock(url: str) -> AsyncIterator[tuple[PayloadLogger, Clock]]:
    """A started logger sending to `url`, whose back-off runs on a clock the test moves."""
    clock = Clock()
    logger = PayloadLogger(LoggerConfig(url=url), clock=clock)
    await logger.start()
    try:
        yield logger, clock
    finally:
        await logger.close()


async def offer(logger: PayloadLogger, requests: int) -> None:
    """What the model server does for `requests` inferences: two events each, the loop turning
    between requests so the workers run as they would under traffic; then until the workers
    are done with them."""
    for i in range(requests):
        logger.log_request(str(i), "m", b"{}", "application/json")
        logger.log_response(str(i), "m", b"{}", "application/json")
        await asyncio.sleep(0)
    await logger.drain()


async def test_a_sink_that_refuses_connections_is_backed_off_from_and_drops_are_counted() -> None:
    async with logger_on_clock(f"http://127.0.0.1:{free_port()}/") as (logger, clock):
        await offer(logger, 200)
        stats = logger.stats
        # Only the attempts under way before the first refusal came back: one per worker at most.
        assert 1 <= stats.failed <= logger.config.workers
        assert stats.sent == 0
        assert stats.failed + stats.dropped == 400  # every event that was not sent is counted
        # The pause over, one event goes as a probe; refused, the pause doubles.
        clock.now += BACKOFF_SECONDS * 1.01
        await offer(logger, 5)
        assert logger.stats.failed == stats.failed + 1
        clock.now += BACKOFF_SECONDS * 1.2  # more than the first pause, less than the second
        await offer(logger, 5)
        assert logger.stats.failed == stats.failed + 1
        clock.now += BACKOFF_SECONDS
        await offer(logger, 5)
        assert logger.stats.failed == stats.failed + 2
        # It never waits longer than the cap between probes.
        for _ in range(10):
            clock.now += BACKOFF_CAP_SECONDS * 1.01
            await offer(logger, 1)
        assert logger.stats.failed == stats.failed + 12
        final = logger.stats
        assert final.failed + final.dropped == 2 * (200 + 15 + 10)


class ResettingSink:
    """A real sink on a loopback port that counts connections: it resets each one (as a dead
    service behind a live port does) until `healthy`, then answers every request with 202."""

    def __init__(self) -> None:
        self.connections = 0
        self.events = 0
        self.healthy = False
        self.handlers: set[asyncio.Task] = set()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        if not self.healthy:
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            writer.transport.abort()
            return
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                self.events += 1
        writer.close()


async def test_a_dead_sink_costs_few_connections_and_events_flow_again_when_it_is_back() -> None:
    sink = ResettingSink()
    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with logger_on_clock(f"http://127.0.0.1:{port}/") as (logger, clock):
            await offer(logger, 200)
            # Without the back-off every one of the 400 events opened a connection.
            reset = sink.connections
            assert 1 <= reset <= logger.config.workers
            assert logger.stats.failed == reset
            assert logger.stats.dropped == 400 - reset
            sink.healthy = True
            clock.now += BACKOFF_SECONDS * 1.01
            await offer(logger, 1)  # its request event is the probe, which finds the sink answering
            await offer(logger, 50)
            assert logger.stats.sent == sink.events == 1 + 100
            # Besides the 400, only the response event offered while the probe was out was dropped.
            assert logger.stats.dropped == 400 - reset + 1
    finally:
        await asyncio.gather(*sink.handlers)  # the logger has closed its connections: they end
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"url": "http://x", "mode": "some"}, "must be one of all", id="mode"),
        pytest.param({"url": "ftp://x"}, "http:// or https://", id="scheme"),
    ],
)
def test_invalid_config_says_what_is_allowed(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoggerConfig(**kwargs)
