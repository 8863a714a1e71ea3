"""The gateway against real replicas: requests held until a replica is ready (the activator's path),
closing with requests in flight, and back-pressure between slow clients and slow replicas.

The `gateway`, `endpoints`, `client` and `start_replica` fixtures are in conftest.py, the replicas
in tests/support/replica_fixtures.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from gateway_fixtures import HOST, event_loop_policy
from net_fixtures import free_port, serve_in_loop
from replica_fixtures import Endpoints, ReplicaStatus, serve, wait_until

from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop


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
