"""For the gateway's tests: replicas that write raw HTTP bytes, a gateway routed to them, and both
event loops.

- `RawUpstream` sends what uvicorn never does: responses delimited by closing the connection (as
  HTTP/1.0 servers and `python3 -m http.server` do), heads that come late, bodies that trickle and
  then stall.
- `routed_gateway` starts a `Gateway` on a free loopback port with one route, `iris` in `default`,
  whose revision `iris-1` is served by the given endpoints.
- `event_loop_policy`, imported into a test module, runs each of its tests on asyncio's loop and on
  uvloop, which `knserve up` uses in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop

from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget

HOST = "iris.default.localhost"
# What a handler does with one connection, once its request head has been read.
Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(asyncio.DefaultEventLoopPolicy, id="asyncio"),
        pytest.param(uvloop.EventLoopPolicy, id="uvloop"),
    ],
)
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test of a module that imports this runs on asyncio's loop and on uvloop."""
    return request.param()


class RawUpstream:
    """A loopback server that reads one request head per connection and hands it to `handler`.

    It counts the connections it accepted and records the request heads, so a test can tell a
    pooled connection from a new one; `close()` stops it and every connection still open.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.endpoint = ""  # "127.0.0.1:port" once started
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.endpoint = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                await self.handler(head, reader, writer)
                if writer.is_closing():
                    return
        except ConnectionError:
            return  # the gateway cut the connection, which is what some tests want
        finally:
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@asynccontextmanager
async def raw_upstream(handler: Handler) -> AsyncIterator[RawUpstream]:
    """A started `RawUpstream`, closed on exit."""
    upstream = await RawUpstream(handler).start()
    try:
        yield upstream
    finally:
        await upstream.close()


class FixedEndpoints:
    """The gateway's EndpointSource: the same ready endpoints for every revision."""

    def __init__(self, *endpoints: str) -> None:
        self.ready = tuple(endpoints)

    def endpoints(self, namespace: str, revision: str) -> tuple[str, ...]:
        return self.ready


@asynccontextmanager
async def routed_gateway(
    *endpoints: str,
    timeout_seconds: int = 30,
    targets: tuple[TrafficTarget, ...] = (TrafficTarget("iris-1", 100),),
    **options: Any,
) -> AsyncIterator[Gateway]:
    """A started gateway routing `HOST` to revision iris-1 (and any other revision in `targets`)
    on `endpoints`; `options` go to `Gateway` and, for `*_timeout_seconds`, to `set_revision`."""
    revision_options = {k: options.pop(k) for k in list(options) if k.endswith("timeout_seconds")}
    gateway = Gateway(FixedEndpoints(*endpoints), **options)
    for target in targets:
        gateway.set_revision("default", target.revision, 0, timeout_seconds, **revision_options)
    gateway.set_route(RouteSpec("default", "iris", targets))
    await gateway.start("127.0.0.1", 0)
    try:
        yield gateway
    finally:
        await gateway.close(grace=1.0)
