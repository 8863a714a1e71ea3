"""For the gateway's tests against real replicas: uvicorn servers on loopback ports, in the test's
event loop.

Each `Replica` is a raw ASGI app that records what it saw (path, headers, body, client port, arrival
order) and can be held at a gate, so queueing, streaming and timeouts are observed as they happen.
`Endpoints` is the gateway's endpoint source, set by the test; `serve` routes iris in default to
replicas; `wait_until` polls a condition that has no event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Replica:
    """A replica: a uvicorn server answering with its name, recording every request."""

    name: str
    port: int
    seen: list[Seen] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    server: uvicorn.Server | None = None
    task: asyncio.Task[Any] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def app(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any
    ) -> None:
        if scope["type"] != "http":
            return
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self._serve(scope, receive, send)
        finally:
            self.active -= 1

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        await self.arrived.put(path)
        body = b""
        if path == "/echo-stream":
            # Echo each request chunk back as it arrives: proves streaming in both directions.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while True:
                message = await receive()
                if message.get("body"):
                    await send(
                        {"type": "http.response.body", "body": message["body"], "more_body": True}
                    )
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.body", "body": b""})
            return
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append(Seen(path, headers, body, scope["client"][1]))
        if path.startswith("/hold"):
            await self.gate.wait()
        if path in ("/stream", "/die"):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first,", "more_body": True})
            await self.gate.wait()
            if path == "/die":
                raise RuntimeError("the replica fails in the middle of its response")
            await send({"type": "http.response.body", "body": b"second"})
            return
        if path == "/empty":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        reply = body if path == "/echo" else f"{self.name} {path}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-replica", self.name.encode())],
            }
        )
        await send({"type": "http.response.body", "body": reply})


class Endpoints:
    """The gateway's EndpointSource, set by the test."""

    def __init__(self) -> None:
        self.ready: dict[tuple[str, str], tuple[str, ...]] = {}

    def endpoints(self, namespace: str, revision: str) -> tuple[str, ...]:
        return self.ready.get((namespace, revision), ())


@dataclass(frozen=True)
class ReplicaStatus:
    """The supervisor's status shape (knative/supervisor/replicas.py), for a revision that failed to start."""

    desired: int
    ready: int
    endpoints: tuple[str, ...]
    failure: str | None


class FailedSupervisor:
    def status(self, namespace: str, revision: str) -> ReplicaStatus:
        failure = "container exited with code 1 at start: ImportError: no module named x"
        return ReplicaStatus(1, 0, (), failure)


async def serve(
    gateway: Gateway,
    endpoints: Endpoints,
    revisions: dict[str, list[Replica]],
    targets: tuple[TrafficTarget, ...] | None = None,
    concurrency: int = 0,
    timeout: int = 30,
) -> None:
    """Route iris in default to `revisions` (by default all traffic to the first one)."""
    for name, replicas in revisions.items():
        endpoints.ready[("default", name)] = tuple(r.endpoint for r in replicas)
        gateway.set_revision("default", name, concurrency, timeout)
    first = next(iter(revisions))
    gateway.set_route(RouteSpec("default", "iris", targets or (TrafficTarget(first, 100),)))


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)  # polling gateway counters, which have no event
