"""The gateway against real replicas: containerConcurrency queueing, timeoutSeconds, and what a
client gets when a replica is missing, refuses, dies or is left.

The `gateway`, `endpoints`, `client` and `start_replica` fixtures are in conftest.py, the replicas
in tests/support/replica_fixtures.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import httpx
import pytest
from gateway_fixtures import HOST, event_loop_policy
from net_fixtures import free_port
from replica_fixtures import Endpoints, FailedSupervisor, serve, wait_until

from knserve.knative.activator.gateway import Gateway, RouteSpec, SupervisorEndpoints, TrafficTarget

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop


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


def test_set_revision_rejects_invalid_limits() -> None:
    gateway = Gateway(Endpoints())
    with pytest.raises(ValueError, match="containerConcurrency is -1, it must be 0"):
        gateway.set_revision("default", "iris-1", -1, 10)
    with pytest.raises(ValueError, match="timeoutSeconds is 0, it must be at least 1"):
        gateway.set_revision("default", "iris-1", 0, 0)
