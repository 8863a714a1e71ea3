"""The InferenceService controller over a real SQLite store, reconciling in-process: a predictor
becomes a Knative Service, status follows it, transformer and explainer chain in, deletes, invalid
specs, ServingRuntimes, conflicts, the watch loop and the routes.

The Serving controller is not running here: `serve` (tests/support/isvc_fixtures.py) writes a
Knative Service's status the way it would, so each test decides which revisions are ready or
failed and reconciles by calling `reconcile` directly. Canary rollouts are in
test_isvc_rollout.py, the model status of failed loads and unservable specs in
test_isvc_model_status.py.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from isvc_fixtures import (
    IRIS,
    ISVC,
    NS,
    PREDICTOR,
    R1,
    R2,
    RUNTIME,
    SERVICE,
    conditions,
    iris,
    ksvc,
    rolled_out_v1,
    serve,
    split,
    status,
    update,
)

from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.controller import (
    InferenceServiceController,
    IsvcRoute,
    isvc_routes,
    resolve_isvc_route,
)
from knserve.knative.kserve.inferenceservice import STORAGE_URI_ANNOTATION as STORAGE_URI


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
    assert "--model_dir=/mnt/models" in container["args"]
    assert annotations[STORAGE_URI] == "file:///models/v1"
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
    assert svc["spec"]["template"]["metadata"]["annotations"][STORAGE_URI] == "file:///models/v2"
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
            {"model": {"modelFormat": {"name": "cobol"}, "storageUri": "s3://m"}},
            "no runtime found to support model format 'cobol'",
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
            "no ServingRuntime or ClusterServingRuntime named 'nope'",
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
    update(store, lambda spec: spec["predictor"]["model"].update(modelFormat={"name": "cobol"}))
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
    assert container["args"] == ["--model_name=iris"]  # nothing appended to a runtime's args


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
