"""Prometheus' HTTP service discovery over the plane: every ready replica and the plane itself.

Prometheus polls `http_sd_configs` URLs for `[{"targets": ["host:port"], "labels": {...}}]`; the
control API answers at `/prometheus/targets` with one group per ready replica (its `/metrics`:
KServe's and knserve's per-model series) and one per part of the plane, each part's own
`/metrics/{component}` on the control API (the gateway's `activator_*` and `revision_*` request
metrics, the autoscaler's state, the broker's event counters):

    replica  namespace, service, configuration, revision, component (KServe's component label:
             predictor, transformer, explainer), inferenceservice and model (the InferenceService
             name, which is the model's name in KServe's runtimes)
    plane    component: activator, autoscaler or broker

A plane target has no `namespace` or `revision` label: its series carry those themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from knserve.knative.apiserver.kinds import named
from knserve.knative.kserve.inferenceservice import COMPONENT_LABEL, ISVC_LABEL
from knserve.knative.serving.resources import CONFIGURATION_LABEL, SERVICE_LABEL

TARGETS_PATH = "/prometheus/targets"
# The plane's parts, each served on the control API at /metrics/{component}.
PLANE_COMPONENTS = ("activator", "autoscaler", "broker")
REVISION = named("revisions")

Endpoints = Callable[[str, str], tuple[str, ...]]


def replica_labels(revision: Mapping[str, Any]) -> dict[str, str]:
    """The discovery labels of a revision's replicas, from the Revision's metadata."""
    meta = revision["metadata"]
    labels = meta.get("labels") or {}
    out = {
        "namespace": meta["namespace"],
        "service": labels.get(SERVICE_LABEL, ""),
        "configuration": labels.get(CONFIGURATION_LABEL, ""),
        "revision": meta["name"],
    }
    isvc = labels.get(ISVC_LABEL)
    if isvc:
        out["inferenceservice"] = isvc
        out["model"] = isvc
        out["component"] = labels.get(COMPONENT_LABEL, "predictor")
    return {k: v for k, v in out.items() if v}


def targets(
    revisions: list[dict[str, Any]], endpoints: Endpoints, api_address: str
) -> list[dict[str, Any]]:
    """The http_sd target groups: each ready replica of `revisions` (`endpoints(namespace,
    revision)` gives their "host:port"), then the plane's parts on the control API."""
    groups = []
    for revision in revisions:
        meta = revision["metadata"]
        ready = endpoints(meta["namespace"], meta["name"])
        if not ready:
            continue
        labels = replica_labels(revision)
        for endpoint in ready:
            groups.append({"targets": [endpoint], "labels": dict(labels)})
    for component in PLANE_COMPONENTS:
        groups.append(
            {
                "targets": [api_address],
                "labels": {"component": component, "__metrics_path__": f"/metrics/{component}"},
            }
        )
    return groups


def targets_route(store: Any, supervisor: Any, api_address: str) -> Route:
    """The control API's `/prometheus/targets`, over the store's Revisions and the supervisor."""

    def endpoints(namespace: str, revision: str) -> tuple[str, ...]:
        return tuple(supervisor.status(namespace, revision).endpoints)

    async def serve(_: Request) -> Response:
        body = orjson.dumps(targets(store.list(REVISION), endpoints, api_address))
        return Response(body, media_type="application/json")

    return Route(TARGETS_PATH, serve, methods=["GET"])
