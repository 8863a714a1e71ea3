"""The gateway against real replicas: routing by host, traffic splits and tags, balancing
over replicas, and serving as the replicas' HTTP proxy.

The `gateway`, `endpoints`, `client` and `start_replica` fixtures are in conftest.py, the replicas
in tests/support/replica_fixtures.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from gateway_fixtures import HOST, event_loop_policy
from replica_fixtures import serve, wait_until

from knserve.knative.activator import gateway as gateway_module
from knserve.knative.activator.gateway import Gateway, TrafficTarget

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop


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


def test_the_gateway_module_exports_its_interface() -> None:
    assert set(gateway_module.__all__) == {
        "EndpointSource",
        "Gateway",
        "RevisionStats",
        "RouteSpec",
        "SupervisorEndpoints",
        "TrafficTarget",
    }
