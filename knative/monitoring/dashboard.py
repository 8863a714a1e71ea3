"""The plane's own dashboard: `/dashboard` on the control API, no Grafana needed.

`/dashboard` is one HTML page (dashboard.html beside this module, plain JS, nothing from a CDN)
that polls `/dashboard/data` every two seconds and draws what it gets:

- the InferenceServices and Knative Services with their URL and readiness;
- their revisions with the share of traffic each gets and desired / ready replicas;
- plots over the last minutes of each revision's requests/s, mean latency and replicas, from the
  `SampleRing` the plane fills every `INTERVAL_SECONDS` (`run_sampler`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from knserve.knative.apiserver.kinds import named
from knserve.knative.monitoring.samples import INTERVAL_SECONDS, Reading, SampleRing
from knserve.knative.serving.resources import SERVICE_LABEL

ISVC, KSVC, REVISION = (named(k) for k in ("inferenceservices", "services", "revisions"))


def _ready(obj: Mapping[str, Any]) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return "Unknown"


def overview(store: Any, replicas: Callable[[str, str], tuple[int, int]]) -> dict[str, Any]:
    """The services and revisions the page lists; `replicas(namespace, revision)` is (desired,
    ready)."""
    services = []
    for kind, label in ((ISVC, "InferenceService"), (KSVC, "Service")):
        for obj in store.list(kind):
            meta, status = obj["metadata"], obj.get("status") or {}
            services.append(
                {
                    "kind": label,
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "url": status.get("url", ""),
                    "ready": _ready(obj),
                }
            )
    traffic: dict[tuple[str, str], int] = {}
    for ksvc in store.list(KSVC):
        namespace = ksvc["metadata"]["namespace"]
        for target in (ksvc.get("status") or {}).get("traffic") or []:
            key = (namespace, target.get("revisionName", ""))
            traffic[key] = traffic.get(key, 0) + int(target.get("percent") or 0)
    revisions = []
    for rev in store.list(REVISION):
        meta = rev["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        desired, ready = replicas(namespace, name)
        revisions.append(
            {
                "namespace": namespace,
                "name": name,
                "service": (meta.get("labels") or {}).get(SERVICE_LABEL, ""),
                "traffic": traffic.get((namespace, name), 0),
                "desired": desired,
                "ready": ready,
            }
        )
    return {"services": services, "revisions": revisions}


def dashboard_routes(
    store: Any, replicas: Callable[[str, str], tuple[int, int]], ring: SampleRing
) -> list[Route]:
    """`/dashboard` (the page) and `/dashboard/data` (what it draws, as JSON)."""
    page = resources.files(__package__).joinpath("dashboard.html").read_text()

    async def html(_: Request) -> Response:
        return HTMLResponse(page)

    async def data(_: Request) -> Response:
        body = {**overview(store, replicas), "samples": ring.series()}
        return Response(orjson.dumps(body), media_type="application/json")

    return [
        Route("/dashboard", html, methods=["GET"]),
        Route("/dashboard/data", data, methods=["GET"]),
    ]


async def run_sampler(
    ring: SampleRing,
    read: Callable[[], Mapping[str, Reading]],
    interval: float = INTERVAL_SECONDS,
) -> None:
    """Add a point to `ring` every `interval` seconds from `read()`, until cancelled."""
    while True:
        ring.add(time.time(), read())
        await asyncio.sleep(interval)  # a period, not a wait for an event
