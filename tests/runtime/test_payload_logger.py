"""The payload logger sends KServe's CloudEvents to a real sink and never blocks or grows unbounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from cloudevents.v1.http import from_http
from net_fixtures import free_port, serve_in_loop

from knserve.runtime.asgi import read_body
from knserve.runtime.payload_logger import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    LoggerConfig,
    PayloadLogger,
)


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
