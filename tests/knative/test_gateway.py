"""The gateway against real replicas: uvicorn servers on loopback ports, in the test's event loop.

Each replica is a raw ASGI app that records what it saw (path, headers, body, client port, arrival
order) and can be held at a gate, so queueing, streaming and timeouts are observed as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
import websockets.asyncio.client
import websockets.exceptions
from gateway_fixtures import event_loop_policy
from net_fixtures import free_port, listening_socket, serve_in_loop

from knserve.knative.activator import gateway as gateway_module
from knserve.knative.activator.gateway import Gateway, RouteSpec, SupervisorEndpoints, TrafficTarget

HOST = "iris.default.localhost"
__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop


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


@pytest.fixture
async def start_replica() -> AsyncIterator[Callable[[str], Awaitable[Replica]]]:
    replicas: list[Replica] = []

    async def start(name: str) -> Replica:
        sock, port = listening_socket()  # bound first: no waiting for uvicorn to start
        replica = Replica(name, port)
        config = uvicorn.Config(
            replica.app,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
        )
        replica.server = uvicorn.Server(config)
        replica.task = asyncio.create_task(replica.server.serve(sockets=[sock]))
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        replica.gate.set()
        assert replica.server is not None and replica.task is not None
        replica.server.should_exit = True
        await replica.task


@pytest.fixture
def endpoints() -> Endpoints:
    return Endpoints()


@pytest.fixture
async def gateway(endpoints: Endpoints) -> AsyncIterator[Gateway]:
    gw = Gateway(endpoints)
    await gw.start("127.0.0.1", 0)
    yield gw
    await gw.close(grace=1.0)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.port}", headers={"Host": HOST}, timeout=10.0
    ) as c:
        yield c


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


# -- routing ---------------------------------------------------------------------------------------
async def test_routes_by_host_ignoring_the_port(gateway, endpoints, client, start_replica) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    response = await client.get("/v1/models/iris?x=1", headers={"Host": HOST + ":8080"})
    assert response.status_code == 200
    assert response.text == "a /v1/models/iris"
    assert response.headers["x-replica"] == "a"


async def test_an_unknown_host_gets_404_naming_the_hosts_served(
    gateway, endpoints, client, start_replica
) -> None:
    await serve(gateway, endpoints, {"iris-1": [await start_replica("a")]})
    response = await client.get("/", headers={"Host": "nosuch.default.localhost"})
    assert response.status_code == 404
    assert "No route serves host 'nosuch.default.localhost'" in response.text
    assert HOST in response.text
    # The connection stays usable after the gateway's own error.
    assert (await client.get("/")).status_code == 200


async def test_split_80_20_over_1000_requests(gateway, endpoints, client, start_replica) -> None:
    one, two = await start_replica("one"), await start_replica("two")
    targets = (TrafficTarget("iris-1", 80), TrafficTarget("iris-2", 20))
    await serve(gateway, endpoints, {"iris-1": [one], "iris-2": [two]}, targets)

    async def worker(count: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(count):
            seen[(await client.get("/")).headers["x-replica"]] += 1
        return seen

    totals = sum(await asyncio.gather(*(worker(100) for _ in range(10))), Counter())
    assert totals == {"one": 800, "two": 200}
    assert gateway.stats("default", "iris-1").requests_total == 800
    assert gateway.stats("default", "iris-2").requests_total == 200


async def test_a_tag_at_zero_percent_is_reached_by_its_host_and_not_by_the_header_by_default(
    gateway, endpoints, client, start_replica
) -> None:
    # Knative's tag-header-based-routing is Disabled unless config-features enables it.
    assert gateway.tag_header_routing is False
    stable, canary = await start_replica("stable"), await start_replica("canary")
    targets = (TrafficTarget("iris-1", 100), TrafficTarget("iris-2", 0, tag="canary"))
    await serve(gateway, endpoints, {"iris-1": [stable], "iris-2": [canary]}, targets)
    by_host = await client.get("/", headers={"Host": "canary-iris.default.localhost"})
    by_header = [
        (await client.get("/", headers={"Knative-Serving-Tag": "canary"})).text for _ in range(20)
    ]
    assert by_host.text == "canary /"
    assert set(by_header) == {"stable /"}
    # The header goes on to the replica untouched, and nothing is appended.
    seen = stable.seen[-1].headers
    assert seen["knative-serving-tag"] == "canary"
    assert "knative-serving-default-route" not in seen
    assert "knative-serving-tag" not in canary.seen[-1].headers


async def test_with_tag_header_routing_enabled_the_header_picks_the_tag(
    endpoints, start_replica
) -> None:
    gateway = Gateway(endpoints, tag_header_routing=True)
    await gateway.start("127.0.0.1", 0)
    stable, canary = await start_replica("stable"), await start_replica("canary")
    targets = (TrafficTarget("iris-1", 100), TrafficTarget("iris-2", 0, tag="canary"))
    await serve(gateway, endpoints, {"iris-1": [stable], "iris-2": [canary]}, targets)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.port}", headers={"Host": HOST}
        ) as client:
            by_host = await client.get("/host", headers={"Host": "canary-iris.default.localhost"})
            by_header = await client.get("/header", headers={"Knative-Serving-Tag": "canary"})
            unknown_tag = await client.get("/unknown", headers={"Knative-Serving-Tag": "nosuch"})
            plain = [(await client.get("/")).headers["x-replica"] for _ in range(20)]
    finally:
        await gateway.close()
    assert by_host.text == "canary /host"
    assert by_header.text == "canary /header"
    assert unknown_tag.text == "stable /unknown"  # an unknown tag falls back to the split
    assert set(plain) == {"stable"}
    # What Knative's ingress appends then: the tag of a tag host, the mark of the default route.
    seen = {s.path: s.headers for s in stable.seen + canary.seen}
    assert seen["/host"]["knative-serving-tag"] == "canary"
    assert seen["/header"]["knative-serving-tag"] == "canary"
    assert "knative-serving-default-route" not in seen["/header"]
    assert seen["/unknown"]["knative-serving-default-route"] == "true"
    assert seen["/"]["knative-serving-default-route"] == "true"


async def test_balances_over_replicas_and_follows_endpoint_changes(
    gateway, endpoints, client, start_replica
) -> None:
    a, b = await start_replica("a"), await start_replica("b")
    await serve(gateway, endpoints, {"iris-1": [a, b]})
    served = Counter([(await client.get("/")).headers["x-replica"] for _ in range(40)])
    assert served == {"a": 20, "b": 20}
    endpoints.ready[("default", "iris-1")] = (b.endpoint,)
    served = Counter([(await client.get("/")).headers["x-replica"] for _ in range(10)])
    assert served == {"b": 10}


async def test_least_in_flight_avoids_a_busy_replica(
    gateway, endpoints, client, start_replica
) -> None:
    a, b = await start_replica("a"), await start_replica("b")
    await serve(gateway, endpoints, {"iris-1": [a, b]})
    held = asyncio.create_task(client.get("/hold"))
    await wait_until(lambda: a.active + b.active == 1)
    busy = a if a.active else b
    free = b if busy is a else a
    served = {(await client.get("/")).headers["x-replica"] for _ in range(10)}
    assert served == {free.name}
    busy.gate.set()
    assert (await held).status_code == 200


# -- concurrency, timeouts and failures ------------------------------------------------------------
async def test_container_concurrency_queues_requests_in_arrival_order(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]}, concurrency=1)
    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(client.get(f"/hold{i}")))
        await wait_until(lambda i=i: gateway.stats("default", "iris-1").in_flight == i + 1)
    stats = gateway.stats("default", "iris-1")
    assert (stats.in_flight, stats.queued, replica.active) == (5, 4, 1)
    replica.gate.set()
    responses = await asyncio.gather(*tasks)
    assert [r.status_code for r in responses] == [200] * 5
    assert [s.path for s in replica.seen] == [f"/hold{i}" for i in range(5)]
    assert replica.max_active == 1
    stats = gateway.stats("default", "iris-1")
    assert (stats.in_flight, stats.queued, stats.requests_total) == (0, 0, 5)
    assert stats.concurrency_seconds > 0


async def test_timeout_seconds_answers_504_with_the_reason(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]}, timeout=1)
    held = await client.get("/hold")
    assert held.status_code == 504
    assert "gave no response within its timeoutSeconds (1s) from replica" in held.text
    assert gateway.stats("default", "iris-1").in_flight == 0
    replica.gate.set()
    assert (await client.get("/")).status_code == 200


async def test_a_request_queued_past_its_timeout_gets_504_saying_so(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]}, concurrency=1, timeout=30)
    held = asyncio.create_task(client.get("/hold"))
    await wait_until(lambda: replica.active == 1)
    gateway.set_revision("default", "iris-1", 1, 1)  # later requests time out after 1 s
    queued = await client.get("/queued")
    assert queued.status_code == 504
    assert "waiting for a free replica (all at containerConcurrency=1)" in queued.text
    assert gateway.stats("default", "iris-1").queued == 0
    replica.gate.set()
    assert (await held).status_code == 200
    assert [seen.path for seen in replica.seen] == ["/hold"]


async def test_no_ready_replica_answers_503_with_the_supervisors_reason() -> None:
    gateway = Gateway(SupervisorEndpoints(FailedSupervisor()))
    await gateway.start("127.0.0.1", 0)
    try:
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        async with httpx.AsyncClient() as c:
            url = f"http://127.0.0.1:{gateway.port}/"
            response = await c.get(url, headers={"Host": HOST})
        assert response.status_code == 503
        assert "Revision default/iris-1 has no ready replica (desired 1, ready 0)" in response.text
        assert "container exited with code 1 at start" in response.text
        stats = gateway.stats("default", "iris-1")
        assert (stats.in_flight, stats.requests_total, stats.queued) == (0, 1, 0)
    finally:
        await gateway.close()


async def test_a_replica_that_refuses_connections_gets_502(gateway, endpoints, client) -> None:
    endpoints.ready[("default", "iris-1")] = (f"127.0.0.1:{free_port()}",)
    gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
    response = await client.get("/")
    assert response.status_code == 502
    assert "Revision default/iris-1 replica 127.0.0.1:" in response.text
    assert "could not be reached" in response.text
    assert gateway.stats("default", "iris-1").in_flight == 0


async def test_a_replica_dying_mid_response_cuts_the_client_off(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    async with client.stream("GET", "/die") as response:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"first,"
        replica.gate.set()  # the replica now fails after its first chunk
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in chunks:
                pass
    await wait_until(lambda: gateway.stats("default", "iris-1").in_flight == 0)


async def test_a_client_that_leaves_frees_its_replica_slot(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]}, concurrency=1)
    leaving = asyncio.create_task(client.get("/hold"))
    await wait_until(lambda: replica.active == 1)
    leaving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leaving
    await wait_until(lambda: gateway.stats("default", "iris-1").in_flight == 0)
    response = await client.get("/after")
    assert response.text == "a /after"


# -- HTTP mechanics --------------------------------------------------------------------------------
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


async def test_a_malformed_request_gets_400(gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Malformed HTTP request" in raw


# -- holding requests for a replica (the activator's path) -----------------------------------------
async def test_held_requests_go_out_when_a_replica_appears(start_replica) -> None:
    endpoints = Endpoints()
    wanted: list[tuple[str, str]] = []
    gateway = Gateway(
        endpoints, hold_unready=True, on_demand=lambda ns, rev: wanted.append((ns, rev))
    )
    await gateway.start("127.0.0.1", 0)
    try:
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        async with httpx.AsyncClient(headers={"Host": HOST}) as c:
            url = f"http://127.0.0.1:{gateway.port}"
            held = [asyncio.create_task(c.get(f"{url}/h{i}")) for i in range(3)]
            await wait_until(lambda: gateway.stats("default", "iris-1").queued == 3)
            assert wanted and wanted[0] == ("default", "iris-1")
            replica = await start_replica("late")
            endpoints.ready[("default", "iris-1")] = (replica.endpoint,)
            gateway.endpoints_changed("default", "iris-1")
            responses = await asyncio.gather(*held)
        assert sorted(r.text for r in responses) == ["late /h0", "late /h1", "late /h2"]
    finally:
        await gateway.close()


class EndpointsAndStatus(Endpoints):
    def status(self, namespace: str, revision: str) -> ReplicaStatus:
        endpoints = self.endpoints(namespace, revision)
        return ReplicaStatus(1, len(endpoints), endpoints, None if endpoints else "probe failing")


async def test_held_requests_find_a_replica_without_being_told_and_time_out_without_one(
    start_replica,
) -> None:
    endpoints = EndpointsAndStatus()
    gateway = Gateway(endpoints, hold_unready=True)
    await gateway.start("127.0.0.1", 0)
    try:
        gateway.set_route(
            RouteSpec(
                "default",
                "iris",
                (TrafficTarget("iris-1", 100), TrafficTarget("iris-2", 0, tag="never")),
            )
        )
        gateway.set_revision("default", "iris-2", 0, 1)
        async with httpx.AsyncClient(headers={"Host": HOST}) as c:
            url = f"http://127.0.0.1:{gateway.port}"
            held = asyncio.create_task(c.get(f"{url}/held"))
            never = asyncio.create_task(
                c.get(url, headers={"Host": "never-iris.default.localhost"})
            )
            await wait_until(lambda: gateway.stats("default", "iris-1").queued == 1)
            replica = await start_replica("late")
            endpoints.ready[("default", "iris-1")] = (replica.endpoint,)  # no endpoints_changed
            assert (await held).text == "late /held"
            timed_out = await never
        assert timed_out.status_code == 504
        assert (
            "while waiting for a replica to become ready (desired 1, ready 0): probe failing"
            in timed_out.text
        )
    finally:
        await gateway.close()


async def test_wait_for_endpoints_wakes_on_change_and_times_out(gateway, endpoints) -> None:
    assert await gateway.wait_for_endpoints("default", "iris-1", timeout=0.1) is False
    waiting = asyncio.create_task(gateway.wait_for_endpoints("default", "iris-1", timeout=5))
    endpoints.ready[("default", "iris-1")] = ("127.0.0.1:1",)
    gateway.endpoints_changed("default", "iris-1")
    assert await waiting is True


async def test_close_lets_in_flight_requests_finish(endpoints, start_replica) -> None:
    replica = await start_replica("a")
    gateway = Gateway(endpoints)
    await gateway.start("127.0.0.1", 0)
    await serve(gateway, endpoints, {"iris-1": [replica]})
    async with httpx.AsyncClient(headers={"Host": HOST}) as c:
        held = asyncio.create_task(c.get(f"http://127.0.0.1:{gateway.port}/hold"))
        await wait_until(lambda: replica.active == 1)
        closing = asyncio.create_task(gateway.close(grace=5))
        await asyncio.sleep(0)
        replica.gate.set()
        response = await held
        await closing
    assert response.text == "a /hold"


def test_set_revision_rejects_invalid_limits() -> None:
    gateway = Gateway(Endpoints())
    with pytest.raises(ValueError, match="containerConcurrency is -1, it must be 0"):
        gateway.set_revision("default", "iris-1", -1, 10)
    with pytest.raises(ValueError, match="timeoutSeconds is 0, it must be at least 1"):
        gateway.set_revision("default", "iris-1", 0, 0)


# -- connection reuse and flow control -------------------------------------------------------------
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


def buffered(gateway: Gateway) -> int:
    """Bytes the gateway holds in its transports' write buffers."""
    total = 0
    for connection in gateway._connections:
        total += connection.transport.get_write_buffer_size()
        for exchange in connection.exchanges:
            if exchange.upstream is not None:
                total += exchange.upstream.transport.get_write_buffer_size()
    return total


async def test_a_slow_client_slows_the_replica_instead_of_filling_memory(
    gateway, endpoints
) -> None:
    chunk = b"x" * 65536
    sent = 0

    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(512):  # 32 MiB
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
        await send({"type": "http.response.body", "body": b""})

    async with serve_in_loop(big, log_level="warning") as url:
        port = int(url.rsplit(":", 1)[1])
        endpoints.ready[("default", "iris-1")] = (f"127.0.0.1:{port}",)
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port, limit=65536)
        writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        await wait_until(lambda: sent >= 1 << 20)
        await asyncio.sleep(0.3)  # the client reads nothing meanwhile: no event marks "nothing"
        assert buffered(gateway) < 1 << 20
        assert sent < 32 << 20
        received = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        assert received.count(chunk[:1]) >= 32 << 20


async def test_a_slow_replica_slows_the_uploading_client(gateway, endpoints) -> None:
    proceed = asyncio.Event()
    got = 0

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal got
        await proceed.wait()
        while True:
            message = await receive()
            got += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(got).encode()})

    async with serve_in_loop(slow, log_level="warning") as url:
        port = int(url.rsplit(":", 1)[1])
        endpoints.ready[("default", "iris-1")] = (f"127.0.0.1:{port}",)
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        size = 32 << 20
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(f"POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {size}\r\n\r\n".encode())
        writer.write(b"y" * size)
        await wait_until(lambda: gateway.stats("default", "iris-1").in_flight == 1)
        await asyncio.sleep(0.3)  # the replica reads nothing meanwhile: no event marks "nothing"
        assert buffered(gateway) < 1 << 20
        proceed.set()
        await asyncio.wait_for(writer.drain(), 20)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        assert head.startswith(b"HTTP/1.1 200 OK")
        writer.close()
        assert got == size


def test_the_gateway_module_exports_its_interface() -> None:
    assert set(gateway_module.__all__) == {
        "EndpointSource",
        "Gateway",
        "RevisionStats",
        "RouteSpec",
        "SupervisorEndpoints",
        "TrafficTarget",
    }


class RaisingEndpoints:
    def endpoints(self, namespace: str, revision: str) -> tuple[str, ...]:
        raise KeyError(revision)


async def test_a_source_that_does_not_know_the_revision_means_no_ready_replica() -> None:
    gateway = Gateway(RaisingEndpoints())
    await gateway.start("127.0.0.1", 0)
    try:
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        async with httpx.AsyncClient(headers={"Host": HOST}) as c:
            response = await c.get(f"http://127.0.0.1:{gateway.port}/")
        assert response.status_code == 503
        assert "Revision default/iris-1 has no ready replica" in response.text
    finally:
        await gateway.close()


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


async def test_the_gateway_serves_as_an_http_proxy_for_replicas(
    gateway, endpoints, start_replica
) -> None:
    # Replicas get HTTP_PROXY pointing at the gateway, so their clients send the absolute form.
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]})
    proxy = f"http://127.0.0.1:{gateway.port}"
    async with httpx.AsyncClient(proxy=proxy) as c:
        response = await c.get(f"http://{HOST}/v1/models/iris?verbose=1")
        unknown = await c.get("http://nosuch.default.localhost/")
    assert response.text == "a /v1/models/iris"
    assert unknown.status_code == 404
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        f"GET http://{HOST}?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n".encode()
    )
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.endswith(b"\r\n\r\n3\r\na /\r\n0\r\n\r\n")
    assert replica.seen[-1].headers["host"] == HOST  # a proxy replaces Host by the URL's host


async def test_a_dead_replica_not_yet_reported_costs_no_request(
    gateway, endpoints, client, start_replica
) -> None:
    live = await start_replica("live")
    dead = f"127.0.0.1:{free_port()}"
    endpoints.ready[("default", "iris-1")] = (dead, live.endpoint)
    gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
    statuses = Counter([(await client.get("/")).status_code for _ in range(20)])
    assert statuses == {200: 20}
    assert len(live.seen) == 20
    assert gateway.stats("default", "iris-1").in_flight == 0


async def test_a_held_request_survives_a_dead_replica_until_its_replacement(start_replica) -> None:
    endpoints = Endpoints()
    gateway = Gateway(endpoints, hold_unready=True)
    await gateway.start("127.0.0.1", 0)
    try:
        endpoints.ready[("default", "iris-1")] = (f"127.0.0.1:{free_port()}",)
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        async with httpx.AsyncClient(headers={"Host": HOST}) as c:
            held = asyncio.create_task(c.get(f"http://127.0.0.1:{gateway.port}/again"))
            await wait_until(lambda: gateway.stats("default", "iris-1").queued == 1)
            replacement = await start_replica("replacement")
            endpoints.ready[("default", "iris-1")] = (replacement.endpoint,)
            gateway.endpoints_changed("default", "iris-1")
            assert (await held).text == "replacement /again"
    finally:
        await gateway.close()
