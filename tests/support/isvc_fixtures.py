"""For the InferenceService controller's tests: the objects over a real SQLite store, with the
Serving controller played by hand.

The Serving controller is not running in those tests: `serve` writes a Knative Service's status
the way it would (latestRevision resolved to the latest ready revision, tags with their URLs), so
each test decides which revisions are ready or failed and reconciles by calling `reconcile`
directly. `iris` is KServe's sklearn example, `update` changes its spec as a user would, `ksvc`,
`status` and `conditions` read what the controller wrote, `split` a traffic block as (tag,
revision, percent), `rolled_out_v1` deploys v1 and makes it ready. The `store`, `routes` and
`controller` fixtures are in tests/knative/conftest.py.
"""

from __future__ import annotations

import copy
from typing import Any

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.controller import InferenceServiceController

ISVC, SERVICE, RUNTIME, REVISION = (
    by_name(k) for k in ("isvc", "ksvc", "servingruntimes", "revisions")
)
NS = "default"
IRIS: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "iris", "namespace": NS},
    "spec": {
        "predictor": {
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "file:///models/v1"}
        }
    },
}
PREDICTOR = "iris-predictor"
R1, R2, R3 = (f"{PREDICTOR}-0000{i}" for i in (1, 2, 3))


def iris(**predictor: Any) -> dict[str, Any]:
    obj = copy.deepcopy(IRIS)
    obj["spec"]["predictor"].update(predictor)
    return obj


def update(store: Store, change: Any) -> dict[str, Any]:
    """Change the InferenceService's spec as a user would (through a full replace)."""
    obj = store.get(ISVC, NS, "iris")
    change(obj["spec"])
    return store.replace(ISVC, obj)


def ksvc(store: Store, name: str = PREDICTOR) -> dict[str, Any]:
    return store.get(SERVICE, NS, name)


def status(store: Store) -> dict[str, Any]:
    return store.get(ISVC, NS, "iris").get("status") or {}


def conditions(store: Store) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status(store).get("conditions") or []}


def serve(
    store: Store,
    name: str = PREDICTOR,
    *,
    ready: str | None,
    created: str | None = None,
    failed: bool = False,
) -> None:
    """Write the Knative Service's status as the Serving controller would: its observed generation,
    its revisions, and its spec traffic with `latestRevision` resolved to the latest ready one
    (with no ready revision, no traffic and a route that waits for one)."""
    obj = ksvc(store, name)
    traffic = []
    for entry in obj["spec"]["traffic"] if ready else []:
        item = {
            "revisionName": ready if entry.get("latestRevision") else entry["revisionName"],
            "latestRevision": bool(entry.get("latestRevision")),
            "percent": entry["percent"],
        }
        if entry.get("tag"):
            item["tag"] = entry["tag"]
            item["url"] = f"http://{entry['tag']}-{name}.{NS}.localhost"
        traffic.append(item)
    url = f"http://{name}.{NS}.localhost"
    if failed:
        message = f"Revision {created!r} failed with message: Container failed with: boom."
        failure = {"status": "False", "reason": "RevisionFailed", "message": message}
        conds = [{"type": "Ready", **failure}, {"type": "ConfigurationsReady", **failure}]
    else:
        conds = [
            {"type": "Ready", "status": "True"},
            {"type": "ConfigurationsReady", "status": "True"},
        ]
    route = (
        {"type": "RoutesReady", "status": "True"}
        if ready
        else {"type": "RoutesReady", "status": "Unknown", "reason": "RevisionMissing"}
    )
    obj["status"] = {
        "observedGeneration": obj["metadata"]["generation"],
        "url": url,
        "address": {"url": url},
        "latestCreatedRevisionName": created or ready,
        "traffic": traffic,
        "conditions": [*conds, route],
    }
    if ready:
        obj["status"]["latestReadyRevisionName"] = ready
    store.replace(SERVICE, obj, subresource="status")


def split(traffic: list[dict[str, Any]]) -> list[tuple[str | None, str, int]]:
    return [(t.get("tag"), t["revisionName"], t["percent"]) for t in traffic]


async def rolled_out_v1(
    store: Store, controller: InferenceServiceController, **predictor: Any
) -> None:
    store.create(ISVC, iris(**predictor))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R1)
    await controller.reconcile(NS, "iris")
