"""The slice of Kubernetes' core `v1` API that generic clients expect of any API server.

Operators written with kopf (and `kubectl`) discover the server through `/api` and `/api/v1`,
list and watch namespaces, and post Events. The plane has no Namespace objects: the namespaces
are those its objects live in (and `default`), and posted Events are acknowledged and dropped,
since the plane's own log says the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from knserve.knative.apiserver.kinds import KINDS
from knserve.knative.apiserver.store import Store


def _namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "status": {"phase": "Active"},
    }


def _namespaces(store: Store) -> list[str]:
    found = {"default"}
    for kind in KINDS.values():
        found.update(obj["metadata"]["namespace"] for obj in store.list(kind))
    return sorted(found)


def core_routes(store: Store) -> list[Route]:
    """Routes for `/api`, `/api/v1`, namespaces (list and watch) and events (accepted, dropped)."""

    async def versions(_: Request) -> Response:
        return JSONResponse(
            {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        )

    async def resources(_: Request) -> Response:
        return JSONResponse(
            {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                        "verbs": ["get", "list", "watch"],
                    },
                    {
                        "name": "events",
                        "singularName": "event",
                        "namespaced": True,
                        "kind": "Event",
                        "verbs": ["create"],
                    },
                ],
            }
        )

    async def namespaces(request: Request) -> Response:
        items = [_namespace(n) for n in _namespaces(store)]
        if request.query_params.get("watch") not in ("true", "1"):
            return JSONResponse(
                {
                    "apiVersion": "v1",
                    "kind": "NamespaceList",
                    "metadata": {"resourceVersion": str(store.resource_version())},
                    "items": items,
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            for item in items:
                yield orjson.dumps({"type": "ADDED", "object": item}) + b"\n"
            await asyncio.Event().wait()  # namespaces never change here; the client hangs up

        return StreamingResponse(stream(), media_type="application/json")

    async def events(request: Request) -> Response:
        body = await request.json()
        return JSONResponse(body, status_code=201)

    return [
        Route("/api", versions),
        Route("/api/v1", resources),
        Route("/api/v1/namespaces", namespaces),
        Route("/api/v1/namespaces/{namespace}/events", events, methods=["POST"]),
    ]
