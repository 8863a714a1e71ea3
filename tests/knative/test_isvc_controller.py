"""The InferenceService controller over a real SQLite store, reconciling in-process.

The Serving controller is not running here: `serve` writes a Knative Service's status the way it
would (latestRevision resolved to the latest ready revision, tags with their URLs), so each test
decides which revisions are ready or failed and reconciles by calling `reconcile` directly.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.controller import (
    InferenceServiceController,
    IsvcRoute,
    isvc_routes,
    resolve_isvc_route,
)

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


@pytest.fixture
def routes() -> dict[tuple[str, str], tuple[IsvcRoute, ...]]:
    return {}


@pytest.fixture
def controller(
    store: Store, routes: dict[tuple[str, str], tuple[IsvcRoute, ...]]
) -> InferenceServiceController:
    def changed(namespace: str, name: str, new: tuple[IsvcRoute, ...]) -> None:
        routes[(namespace, name)] = new

    return InferenceServiceController(store, routes_changed=changed)


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


def canary(store: Store, percent: int, version: str) -> None:
    """A new model version, given `percent` of the traffic (KServe's canaryTrafficPercent)."""
    update(
        store,
        lambda spec: spec["predictor"].update(
            canaryTrafficPercent=percent,
            model={"modelFormat": {"name": "sklearn"}, "storageUri": f"file:///models/{version}"},
        ),
    )


async def rolled_out_v1(
    store: Store, controller: InferenceServiceController, **predictor: Any
) -> None:
    store.create(ISVC, iris(**predictor))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R1)
    await controller.reconcile(NS, "iris")


async def canary_v2_ready(store: Store, controller: InferenceServiceController) -> None:
    """v1 rolled out, then v2 as a 20 % canary whose revision is ready."""
    await rolled_out_v1(store, controller)
    canary(store, 20, "v2")
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")


async def test_a_predictor_becomes_a_knative_service_owned_by_the_inferenceservice(
    store: Store, controller: InferenceServiceController
) -> None:
    created = store.create(ISVC, iris(minReplicas=0, maxReplicas=3))
    await controller.reconcile(NS, "iris")
    svc = ksvc(store)
    owner = svc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "InferenceService",
        "iris",
        created["metadata"]["uid"],
        True,
    )
    assert svc["metadata"]["labels"]["serving.kserve.io/inferenceservice"] == "iris"
    assert svc["metadata"]["labels"]["component"] == "predictor"
    annotations = svc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/max-scale"] == "3"
    container = svc["spec"]["template"]["spec"]["containers"][0]
    assert "--storage_uri=file:///models/v1" in container["args"]
    assert svc["spec"]["traffic"] == [{"tag": "latest", "latestRevision": True, "percent": 100}]
    conds = conditions(store)
    assert conds["PredictorReady"]["status"] == "Unknown"
    assert conds["Ready"]["status"] == "Unknown"
    assert status(store)["observedGeneration"] == 1
    assert "url" not in status(store)


async def test_status_follows_the_knative_service_and_is_written_only_when_it_changes(
    store: Store, controller: InferenceServiceController
) -> None:
    await rolled_out_v1(store, controller)
    got = status(store)
    assert got["url"] == "http://iris.default.localhost"
    assert got["address"] == {"url": "http://iris.default.svc.cluster.local"}  # KServe's
    assert {t: c["status"] for t, c in conditions(store).items()} == dict.fromkeys(
        [
            "PredictorReady",
            "PredictorRouteReady",
            "PredictorConfigurationReady",
            "RoutesReady",
            "LatestDeploymentReady",
            "IngressReady",
            "Ready",
        ],
        "True",
    )
    assert got["modelStatus"] == {
        "transitionStatus": "UpToDate",
        "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
    }
    predictor = got["components"]["predictor"]
    assert predictor["url"] == "http://iris-predictor.default.localhost"
    assert predictor["latestCreatedRevision"] == predictor["latestReadyRevision"] == R1
    assert predictor["latestRolledoutRevision"] == R1
    assert split(predictor["traffic"]) == [("latest", R1, 100)]
    version = store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"]
    await controller.reconcile(NS, "iris")
    assert store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"] == version


async def test_a_spec_change_updates_the_service_and_is_not_ready_until_observed(
    store: Store, controller: InferenceServiceController
) -> None:
    await rolled_out_v1(store, controller)
    update(
        store,
        lambda spec: spec["predictor"].update(
            minReplicas=2,
            model={"modelFormat": {"name": "sklearn"}, "storageUri": "file:///models/v2"},
        ),
    )
    await controller.reconcile(NS, "iris")
    svc = ksvc(store)
    assert svc["metadata"]["generation"] == 2
    assert (
        "--storage_uri=file:///models/v2"
        in svc["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert (
        svc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"]
        == "2"
    )
    conds = conditions(store)
    assert conds["PredictorReady"]["status"] == "Unknown"
    assert conds["PredictorReady"]["reason"] == "Reconciling"
    assert status(store)["observedGeneration"] == 2
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    assert conditions(store)["Ready"]["status"] == "True"
    assert status(store)["components"]["predictor"]["previousRolledoutRevision"] == R1


async def test_canary_splits_with_tags_then_promotion_moves_everything_to_the_new_revision(
    store: Store, controller: InferenceServiceController
) -> None:
    await rolled_out_v1(store, controller)
    canary(store, 20, "v2")
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 20},
        {"tag": "prev", "revisionName": R1, "latestRevision": False, "percent": 80},
    ]
    # While v2 starts, both entries resolve to v1: every request still reaches a ready revision.
    serve(store, ready=R1, created=R2)
    await controller.reconcile(NS, "iris")
    assert split(status(store)["components"]["predictor"]["traffic"]) == [
        ("latest", R1, 20),
        ("prev", R1, 80),
    ]
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 20), ("prev", R1, 80)]
    assert predictor["traffic"][0]["url"] == "http://latest-iris-predictor.default.localhost"
    assert predictor["traffic"][1]["url"] == "http://prev-iris-predictor.default.localhost"
    assert predictor["latestRolledoutRevision"] == R1
    assert conditions(store)["Ready"]["status"] == "True"

    update(store, lambda spec: spec["predictor"].pop("canaryTrafficPercent"))
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 100}
    ]
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 100)]
    assert predictor["latestRolledoutRevision"] == R2
    assert predictor["previousRolledoutRevision"] == R1


async def test_canary_zero_rolls_back_to_the_rolled_out_revision_and_keeps_latest_tagged(
    store: Store, controller: InferenceServiceController
) -> None:
    await canary_v2_ready(store, controller)

    update(store, lambda spec: spec["predictor"].update(canaryTrafficPercent=0))
    await controller.reconcile(NS, "iris")
    svc = ksvc(store)
    assert svc["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 0},
        {"tag": "prev", "revisionName": R1, "latestRevision": False, "percent": 100},
    ]
    assert svc["metadata"]["generation"] == 3  # only the traffic changed: no new template
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 0), ("prev", R1, 100)]
    assert predictor["latestRolledoutRevision"] == R1
    assert predictor["latestReadyRevision"] == R2


async def test_canary_zero_after_a_promote_rolls_back_to_the_previous_rolled_out_revision(
    store: Store, controller: InferenceServiceController
) -> None:
    await canary_v2_ready(store, controller)
    update(store, lambda spec: spec["predictor"].pop("canaryTrafficPercent"))  # promote
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert (predictor["latestRolledoutRevision"], predictor["previousRolledoutRevision"]) == (
        R2,
        R1,
    )

    update(store, lambda spec: spec["predictor"].update(canaryTrafficPercent=0))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)  # Knative reports the split the first translation made ...
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)  # ... and the one KServe's status rule leads to
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 0},
        {"tag": "prev", "revisionName": R1, "latestRevision": False, "percent": 100},
    ]
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 0), ("prev", R1, 100)]
    assert predictor["latestRolledoutRevision"] == R1
    assert conditions(store)["Ready"]["status"] == "True"
    version = store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"]
    await controller.reconcile(NS, "iris")  # settled: nothing left to change
    assert store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"] == version

    # promoting again (the field removed) hands everything back to the latest revision
    update(store, lambda spec: spec["predictor"].pop("canaryTrafficPercent"))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 100)]
    assert predictor["latestRolledoutRevision"] == R2


async def test_a_later_canary_splits_against_the_promoted_revision(
    store: Store, controller: InferenceServiceController
) -> None:
    await rolled_out_v1(store, controller)
    update(store, lambda spec: spec["predictor"]["model"].update(storageUri="file:///models/v2"))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    canary(store, 10, "v3")
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"][1] == {
        "tag": "prev",
        "revisionName": R2,
        "latestRevision": False,
        "percent": 90,
    }
    serve(store, ready=R3)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R3, 10), ("prev", R2, 90)]
    assert (predictor["latestRolledoutRevision"], predictor["previousRolledoutRevision"]) == (
        R2,
        R1,
    )


@pytest.mark.parametrize(
    "canary", [pytest.param(20, id="canary"), pytest.param(None, id="no-canary")]
)
async def test_a_failed_new_revision_leaves_the_traffic_on_the_previous_one(
    store: Store, controller: InferenceServiceController, canary: int | None
) -> None:
    await rolled_out_v1(store, controller)

    def change(spec: dict[str, Any]) -> None:
        spec["predictor"]["model"]["storageUri"] = "file:///models/broken"
        if canary is not None:
            spec["predictor"]["canaryTrafficPercent"] = canary

    update(store, change)
    await controller.reconcile(NS, "iris")
    serve(store, ready=R1, created=R2, failed=True)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert {t["revisionName"] for t in predictor["traffic"]} == {R1}
    assert sum(t["percent"] for t in predictor["traffic"]) == 100
    assert predictor["latestCreatedRevision"] == R2
    assert predictor["latestReadyRevision"] == predictor["latestRolledoutRevision"] == R1
    conds = conditions(store)
    assert conds["PredictorReady"]["status"] == "False"
    assert R2 in conds["PredictorReady"]["message"]
    assert conds["Ready"]["status"] == "False"


def crashed(store: Store, revision: str, code: int, message: str) -> None:
    """The Revision as Knative writes it when its container exited (the Serving controller's
    contract): ContainerHealthy False with reason ExitCode{N} and the termination message."""
    store.create(
        REVISION,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": revision, "namespace": NS},
            "spec": ksvc(store)["spec"]["template"]["spec"],
        },
        validate=False,
    )
    obj = store.get(REVISION, NS, revision)
    failure = {
        "status": "False",
        "reason": f"ExitCode{code}",
        "message": f"Container failed with: {message}",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    obj["status"] = {
        "conditions": [{"type": "Ready", **failure}, {"type": "ContainerHealthy", **failure}]
    }
    store.replace(REVISION, obj, subresource="status")


LOAD_FAILURE = "model iris failed to load: cannot read /models/broken/model.joblib: EOFError"


@pytest.mark.parametrize(
    ("first", "active"),
    [
        pytest.param(True, "Pending", id="first-deploy"),
        pytest.param(False, "Loaded", id="new-version"),
    ],
)
async def test_a_model_that_fails_to_load_is_the_model_status_with_its_exit_code_and_reason(
    store: Store, controller: InferenceServiceController, first: bool, active: str
) -> None:
    if first:
        store.create(
            ISVC,
            iris(model={"modelFormat": {"name": "sklearn"}, "storageUri": "file:///models/broken"}),
        )
        await controller.reconcile(NS, "iris")
        assert status(store)["modelStatus"] == {
            "transitionStatus": "InProgress",
            "states": {"activeModelState": "Pending", "targetModelState": "Pending"},
        }
        broken, serving = R1, None
    else:
        await rolled_out_v1(store, controller)
        update(
            store,
            lambda spec: spec["predictor"]["model"].update(storageUri="file:///models/broken"),
        )
        await controller.reconcile(NS, "iris")
        broken, serving = R2, R1
    crashed(store, broken, 1, LOAD_FAILURE)
    serve(store, ready=serving, created=broken, failed=True)
    await controller.reconcile(NS, "iris")
    got = status(store)
    assert got["modelStatus"] == {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": active, "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {
            "reason": "ModelLoadFailed",
            "message": LOAD_FAILURE,
            "exitCode": 1,
            "location": broken,
            "time": "2025-01-01T00:00:00Z",
        },
    }
    conds = conditions(store)
    assert (
        conds["PredictorConfigurationReady"]["status"],
        conds["LatestDeploymentReady"]["status"],
    ) == (
        "False",
        "False",
    )
    assert conds["LatestDeploymentReady"]["reason"] == "PredictorConfigurationReady not ready"
    # the previous version still serves; with none, the route waits for a ready revision
    assert conds["RoutesReady"]["status"] == ("Unknown" if first else "True")


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        pytest.param(
            {"modelFormat": {"name": "tensorflow"}}, "NoSupportingRuntime", id="no-runtime"
        ),
        pytest.param(
            {"modelFormat": {"name": "sklearn"}, "runtime": "nope"},
            "RuntimeNotRecognized",
            id="unknown-runtime",
        ),
        pytest.param(
            {"modelFormat": {"name": "sklearn"}, "storageUri": "ftp://m"},
            "InvalidPredictorSpec",
            id="storage-uri",
        ),
    ],
)
async def test_a_spec_that_cannot_be_served_is_the_model_status_invalid_spec(
    store: Store, controller: InferenceServiceController, model: dict[str, Any], reason: str
) -> None:
    store.create(ISVC, iris(model=model))
    await controller.reconcile(NS, "iris")
    got = status(store)["modelStatus"]
    assert got["transitionStatus"] == "InvalidSpec"
    assert got["states"] == {"activeModelState": "Pending", "targetModelState": "FailedToLoad"}
    assert got["lastFailureInfo"]["reason"] == reason
    assert got["lastFailureInfo"]["message"] == conditions(store)["Ready"]["message"]


async def test_transformer_and_explainer_are_added_chained_and_removed(
    store: Store,
    controller: InferenceServiceController,
    routes: dict[tuple[str, str], tuple[IsvcRoute, ...]],
) -> None:
    await rolled_out_v1(store, controller)
    assert {r.service for r in routes[(NS, "iris")]} == {PREDICTOR}

    def add(spec: dict[str, Any]) -> None:
        spec["transformer"] = {"containers": [{"name": "kserve-container", "image": "t"}]}
        spec["explainer"] = {"containers": [{"name": "kserve-container", "image": "e"}]}

    update(store, add)
    await controller.reconcile(NS, "iris")
    transformer = ksvc(store, "iris-transformer")
    assert transformer["metadata"]["labels"]["component"] == "transformer"
    env = transformer["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PREDICTOR_HOST", "value": "iris-predictor.default.localhost"} in env
    assert ksvc(store, "iris-explainer")["metadata"]["ownerReferences"][0]["name"] == "iris"
    conds = conditions(store)
    assert conds["TransformerReady"]["status"] == "Unknown"
    assert conds["IngressReady"]["status"] == "Unknown"
    assert conds["Ready"]["status"] == "Unknown"
    assert [(r.path_suffix, r.service) for r in routes[(NS, "iris")]] == [
        (":explain", "iris-explainer"),
        ("", "iris-transformer"),
    ] * 2

    serve(store, "iris-transformer", ready="iris-transformer-00001")
    serve(store, "iris-explainer", ready="iris-explainer-00001")
    await controller.reconcile(NS, "iris")
    conds = conditions(store)
    assert {t: c["status"] for t, c in conds.items()} == dict.fromkeys(
        [
            "ExplainerReady",
            "IngressReady",
            "PredictorReady",
            "Ready",
            "TransformerReady",
            "RoutesReady",
            "LatestDeploymentReady",
            "PredictorRouteReady",
            "TransformerRouteReady",
            "ExplainerRoutesReady",
            "PredictorConfigurationReady",
            "TransformerConfigurationReady",
            "ExplainerConfigurationReady",
        ],
        "True",
    )
    assert (
        status(store)["components"]["transformer"]["latestReadyRevision"]
        == "iris-transformer-00001"
    )

    update(store, lambda spec: (spec.pop("transformer"), spec.pop("explainer")))
    await controller.reconcile(NS, "iris")
    assert store.find(SERVICE, NS, "iris-transformer") is None
    assert store.find(SERVICE, NS, "iris-explainer") is None
    assert set(status(store)["components"]) == {"predictor"}
    assert "TransformerReady" not in conditions(store)
    assert {r.service for r in routes[(NS, "iris")]} == {PREDICTOR}


async def test_deleting_the_inferenceservice_deletes_its_services_and_routes(
    store: Store,
    controller: InferenceServiceController,
    routes: dict[tuple[str, str], tuple[IsvcRoute, ...]],
) -> None:
    obj = iris()
    obj["spec"]["transformer"] = {"containers": [{"name": "kserve-container", "image": "t"}]}
    store.create(ISVC, obj)
    await controller.reconcile(NS, "iris")
    assert len(store.list(SERVICE, NS)) == 2
    store.delete(ISVC, NS, "iris")
    assert store.list(SERVICE, NS) == []
    await controller.reconcile(NS, "iris")
    assert routes[(NS, "iris")] == ()


@pytest.mark.parametrize(
    ("predictor", "message"),
    [
        pytest.param(
            {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": "s3://m"}},
            "no serving runtime auto-selects model format 'tensorflow'",
            id="no-runtime",
        ),
        pytest.param(
            {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "runtime": "nope",
                    "storageUri": "s3://m",
                }
            },
            "no serving runtime named 'nope'",
            id="unknown-runtime",
        ),
        pytest.param(
            {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "ftp://host/m"}},
            "StorageURI not supported: storageUri, must be one of: [gs://, s3://",
            id="storage-uri",
        ),
    ],
)
async def test_an_invalid_spec_is_ready_false_with_the_message(
    store: Store, controller: InferenceServiceController, predictor: dict[str, Any], message: str
) -> None:
    obj = copy.deepcopy(IRIS)
    obj["spec"]["predictor"] = predictor
    store.create(ISVC, obj)
    await controller.reconcile(NS, "iris")
    ready = conditions(store)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert message in ready["message"]
    assert store.list(SERVICE, NS) == []
    version = store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"]
    await controller.reconcile(NS, "iris")  # converges: the same failure is not rewritten
    assert store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"] == version


async def test_an_invalid_update_leaves_the_serving_revision_alone(
    store: Store, controller: InferenceServiceController
) -> None:
    await rolled_out_v1(store, controller)
    before = ksvc(store)
    update(
        store, lambda spec: spec["predictor"]["model"].update(modelFormat={"name": "tensorflow"})
    )
    await controller.reconcile(NS, "iris")
    assert ksvc(store) == before
    got = status(store)
    assert conditions(store)["Ready"]["reason"] == "InvalidSpec"
    assert conditions(store)["PredictorReady"]["status"] == "True"
    assert got["components"]["predictor"]["latestRolledoutRevision"] == R1
    update(store, lambda spec: spec["predictor"]["model"].update(modelFormat={"name": "sklearn"}))
    await controller.reconcile(NS, "iris")
    assert conditions(store)["Ready"]["status"] == "True"


async def test_a_servingruntime_in_the_namespace_wins_over_the_builtin_one(
    store: Store, controller: InferenceServiceController
) -> None:
    store.create(
        RUNTIME,
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": "my-sklearn", "namespace": NS},
            "spec": {
                "supportedModelFormats": [{"name": "sklearn", "autoSelect": True, "priority": 5}],
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "me/sklearn:1",
                        "args": ["--model_name={{.Name}}"],
                    }
                ],
            },
        },
    )
    store.create(ISVC, iris())
    await controller.reconcile(NS, "iris")
    container = ksvc(store)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "me/sklearn:1"
    assert container["args"] == ["--model_name=iris", "--storage_uri=file:///models/v1"]


async def test_a_service_of_the_same_name_that_belongs_to_someone_else_is_left_alone(
    store: Store, controller: InferenceServiceController
) -> None:
    theirs = store.create(
        SERVICE,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": PREDICTOR, "namespace": NS},
            "spec": {"template": {"spec": {"containers": [{"image": "theirs"}]}}},
        },
    )
    store.create(ISVC, iris())
    await controller.reconcile(NS, "iris")
    assert ksvc(store) == theirs
    ready = conditions(store)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ServiceConflict")
    assert "not owned by InferenceService 'iris'" in ready["message"]


async def test_run_reconciles_from_the_watch(store: Store) -> None:
    seen: list[tuple[str, tuple[IsvcRoute, ...]]] = []
    controller = InferenceServiceController(
        store, routes_changed=lambda ns, name, routes: seen.append((name, routes))
    )
    store.create(ISVC, iris())  # before the controller starts: found by its initial list
    task = asyncio.create_task(controller.run())

    async def until(check: Any) -> None:
        for _ in range(200):  # a bounded number of loop turns, not a timed wait
            if check():
                return
            await asyncio.sleep(0)
        raise AssertionError("the controller did not converge")

    try:
        await until(lambda: store.find(SERVICE, NS, PREDICTOR) is not None)
        serve(store, ready=R1)  # the Knative Service's status change wakes the controller
        await until(lambda: conditions(store).get("Ready", {}).get("status") == "True")
        store.create(
            RUNTIME,
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "ServingRuntime",
                "metadata": {"name": "mine", "namespace": NS},
                "spec": {
                    "supportedModelFormats": [
                        {"name": "sklearn", "autoSelect": True, "priority": 9}
                    ],
                    "containers": [{"name": "kserve-container", "image": "me/mine"}],
                },
            },
        )
        await until(
            lambda: ksvc(store)["spec"]["template"]["spec"]["containers"][0]["image"] == "me/mine"
        )
        store.delete(ISVC, NS, "iris")
        await until(lambda: seen and seen[-1] == ("iris", ()))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert store.list(SERVICE, NS) == []


def test_the_isvc_host_goes_to_the_transformer_else_the_predictor_and_explain_to_the_explainer() -> (
    None
):
    obj = iris()
    own, local = isvc_routes(obj)
    assert own == IsvcRoute(
        "iris.default.localhost", "", NS, PREDICTOR, "iris-predictor.default.localhost"
    )
    assert local.host == "iris.default.svc.cluster.local"  # status.address.url answers too
    assert (local.service, local.service_host) == (own.service, own.service_host)
    obj["spec"]["transformer"] = {"containers": [{"name": "kserve-container", "image": "t"}]}
    obj["spec"]["explainer"] = {"containers": [{"image": "e"}]}
    routes = isvc_routes(obj, "example.com")
    assert [(r.host, r.path_suffix, r.service_host) for r in routes] == [
        ("iris.default.example.com", ":explain", "iris-explainer.default.example.com"),
        ("iris.default.example.com", "", "iris-transformer.default.example.com"),
        ("iris.default.svc.cluster.local", ":explain", "iris-explainer.default.example.com"),
        ("iris.default.svc.cluster.local", "", "iris-transformer.default.example.com"),
    ]
    host = "iris.default.example.com"
    explain = resolve_isvc_route(routes, host, "/v1/models/iris:explain?x=1")
    assert explain is not None and explain.service == "iris-explainer"
    predict = resolve_isvc_route(routes, host, "/v1/models/iris:predict")
    assert predict is not None and predict.service == "iris-transformer"
    assert resolve_isvc_route(routes, "other.default.example.com", "/") is None
    # Only the components whose Services exist count; without a predictor there is nothing to route.
    assert {r.service for r in isvc_routes(obj, components=["predictor"])} == {PREDICTOR}
    assert isvc_routes(obj, components=[]) == ()
