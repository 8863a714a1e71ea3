"""The plane's `/metrics` on the control API: everything at once, and each part on its own path.

`/metrics` keeps serving all of the plane's series (the autoscaler's state, the gateway's request
metrics, the broker's counters); `/metrics/{component}` serves one part, so Prometheus can scrape
them as the separate targets they would be on a cluster (`knserve.knative.monitoring.targets`).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _registry(collectors: list[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def metrics_routes(components: Mapping[str, list[Collector]]) -> list[Route]:
    """Routes for `/metrics` (every collector) and `/metrics/{component}` (that one's)."""
    registries = {name: _registry(found) for name, found in components.items()}
    everything = _registry([c for found in components.values() for c in found])

    async def all_metrics(_: Request) -> Response:
        return Response(generate_latest(everything), media_type=CONTENT_TYPE_LATEST)

    async def one(request: Request) -> Response:
        component = request.path_params["component"]
        registry = registries.get(component)
        if registry is None:
            return Response(
                f"no metrics component {component!r}; the plane has: {', '.join(registries)}\n",
                status_code=404,
                media_type="text/plain",
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/metrics", all_metrics, methods=["GET"]),
        Route("/metrics/{component}", one, methods=["GET"]),
    ]
