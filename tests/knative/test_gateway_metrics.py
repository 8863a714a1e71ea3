"""The gateway's per-revision request metrics under Knative's names, against real replicas.

Each test runs a real gateway on loopback in front of replicas that answer raw HTTP, sends real
requests, and reads the metrics as Prometheus would: `GatewayCollector` rendered in the text
format and parsed back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from gateway_fixtures import HOST, FixedEndpoints, event_loop_policy, raw_upstream, routed_gateway
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from replica_fixtures import Endpoints, wait_until

from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget
from knserve.knative.activator.request_metrics import GatewayCollector

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop

Samples = list[tuple[str, dict[str, str], float]]


def scrape(gateway: Gateway) -> Samples:
    """The gateway's metrics as Prometheus reads them: rendered, then parsed."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway, lambda ns, rev: ("iris", "iris-config")))
    text = generate_latest(registry).decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    return sum(v for n, got, v in samples if n == name and labels.items() <= got.items())


async def answer_by_path(head: bytes, reader: Any, writer: asyncio.StreamWriter) -> None:
    """A replica answering GET /{status} with that status."""
    status = int(head.split(b" ", 2)[1].strip(b"/") or b"200")
    writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % status)
    await writer.drain()


async def test_requests_are_counted_by_code_for_the_revision_and_its_replica() -> None:
    async with (
        raw_upstream(answer_by_path) as replica,
        routed_gateway(replica.endpoint) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", headers={"Host": HOST}) as c,
    ):
        for path in ["/200", "/200", "/200", "/404", "/404", "/503"]:
            await c.get(path)
        samples = scrape(gateway)
    knative = {
        "namespace_name": "default",
        "service_name": "iris",
        "configuration_name": "iris-config",
        "revision_name": "iris-1",
    }
    by_activator = {**knative, "pod_name": "gateway", "container_name": "activator"}
    by_replica = {**knative, "pod_name": replica.endpoint, "container_name": "queue-proxy"}
    for labels in (by_activator, by_replica):
        name = "activator" if labels is by_activator else "revision"
        count = f"{name}_request_count"
        assert value(samples, count, response_code="200", response_code_class="2xx", **labels) == 3
        assert value(samples, count, response_code="404", response_code_class="4xx", **labels) == 2
        assert value(samples, count, response_code="503", response_code_class="5xx", **labels) == 1
        latencies = f"{name}_request_latencies"
        assert value(samples, f"{latencies}_count", response_code="200", **labels) == 3
        assert value(samples, f"{latencies}_bucket", le="+Inf", response_code="200", **labels) == 3
        # loopback answers take well under Knative's first bucket (5 ms)... or at least under 1 s
        assert value(samples, f"{latencies}_bucket", le="1000.0", **labels) == 6
        assert 0 < value(samples, f"{latencies}_sum", **labels) < 6000
    # the replica wrote every one of these status lines itself
    assert value(samples, "revision_app_request_count", **by_replica) == 6
    assert value(samples, "knserve_revision_cold_starts_total", revision="iris-1") == 0


async def never_answer(head: bytes, reader: Any, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def test_the_gateways_own_answers_count_for_the_activator_but_not_the_app() -> None:
    async with (
        raw_upstream(never_answer) as replica,
        routed_gateway(replica.endpoint, timeout_seconds=1) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", headers={"Host": HOST}) as c,
    ):
        response = await c.get("/slow")
        assert response.status_code == 504
        samples = scrape(gateway)
    assert value(samples, "activator_request_count", response_code="504") == 1
    assert value(samples, "activator_request_latencies_sum", response_code="504") >= 1000
    # given to the replica (its queue-proxy saw it), but the replica never wrote a status
    assert value(samples, "revision_request_count", response_code="504") == 1
    assert value(samples, "revision_app_request_count") == 0


async def test_requests_held_for_a_replica_count_one_cold_start_and_their_wait() -> None:
    endpoints = Endpoints()
    gateway = Gateway(endpoints, hold_unready=True)
    gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
    await gateway.start("127.0.0.1", 0)
    try:
        async with (
            raw_upstream(answer_by_path) as replica,
            httpx.AsyncClient(headers={"Host": HOST}) as c,
        ):
            url = f"http://127.0.0.1:{gateway.port}"
            held = [asyncio.create_task(c.get(f"{url}/200")) for _ in range(3)]
            await wait_until(lambda: gateway.stats("default", "iris-1").queued == 3)
            await asyncio.sleep(0.2)  # the cold start's length: time must pass, nothing to await
            endpoints.ready[("default", "iris-1")] = (replica.endpoint,)
            gateway.endpoints_changed("default", "iris-1")
            assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 3
            await c.get(f"{url}/200")  # a replica is ready now: no cold start
            samples = scrape(gateway)
    finally:
        await gateway.close()
    assert value(samples, "knserve_revision_cold_starts_total", revision="iris-1") == 1
    assert value(samples, "activator_request_count", response_code="200") == 4
    # the activator's view includes the wait for the replica; the replica's starts when picked
    assert value(samples, "activator_request_latencies_sum") >= 3 * 200
    assert value(samples, "revision_request_latencies_sum") < 3 * 200


def test_a_revision_never_requested_has_no_request_series() -> None:
    gateway = Gateway(FixedEndpoints("127.0.0.1:1"))
    gateway.set_revision("default", "idle-1", 0, 30)
    samples = scrape(gateway)
    assert value(samples, "activator_request_count") == 0
    assert value(samples, "knserve_revision_cold_starts_total", revision="idle-1") == 0
    assert any(n == "knserve_revision_cold_starts_total" for n, _, _ in samples)
