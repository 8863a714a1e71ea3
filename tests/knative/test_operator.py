"""The kopf operator's reconciler against a Kubernetes-API server on loopback.

The server is the local plane's control API, which serves the core discovery documents, namespaces
and Events kopf reads besides the custom resources. No Knative controller runs there, so where the
tests need Knative's part (a revision, a ready status) they write it through the API as Knative
would (tests/support/operator_fixtures.py). kopf itself and the operator's process are in
test_operator_kopf.py, the manifests in test_operator_manifests.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kube_server import Switchboard
from operator_fixtures import (
    ISVCS,
    REVISIONS,
    RUNTIMES,
    SERVICES,
    conditions,
    iris,
    knative_marks_ready,
)

from knserve.knative.apiserver.errors import NotFound
from knserve.knative.kserve.inferenceservice import Target, knative_services
from knserve.knative.kserve.runtimes import merge_runtimes
from knserve.knative.kube.client import KubeClient
from knserve.knative.kube.operator import ANNOTATION_PREFIX, Reconciler

# ---- the reconciler ----------------------------------------------------------------------------


def test_reconciling_makes_owned_knative_services_with_the_shared_translation(
    kube: KubeClient,
) -> None:
    kube.apply(iris(transformer=True))
    Reconciler(kube).reconcile("default", "iris")
    isvc = kube.get(ISVCS, "default", "iris")
    made = {s["metadata"]["name"]: s for s in kube.list(SERVICES, "default")}
    expected = knative_services(isvc, merge_runtimes([]), Target(cluster=True), {})
    assert sorted(made) == ["iris-predictor", "iris-transformer"]
    for want in expected:
        got = made[want["metadata"]["name"]]
        assert got["spec"] == want["spec"]
        assert got["metadata"]["labels"] == want["metadata"]["labels"]
        assert got["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "name": "iris",
                "uid": isvc["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    args = made["iris-transformer"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--predictor_host") + 1] == "iris-predictor.default"  # cluster-local
    assert args[args.index("--http_port") + 1] == "8080"
    assert conditions(isvc) == dict.fromkeys(
        [
            "PredictorReady",
            "TransformerReady",
            "IngressReady",
            "Ready",
            "RoutesReady",
            "LatestDeploymentReady",
            "PredictorRouteReady",
            "PredictorConfigurationReady",
            "TransformerRouteReady",
            "TransformerConfigurationReady",
        ],
        "Unknown",
    )


def test_a_crashed_predictor_revision_on_the_cluster_becomes_the_model_status(
    kube: KubeClient,
) -> None:
    reconciler = Reconciler(kube)
    kube.apply(iris())
    reconciler.reconcile("default", "iris")
    ksvc = kube.get(SERVICES, "default", "iris-predictor")
    revision = kube.create(
        REVISIONS,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": "iris-predictor-00001", "namespace": "default"},
            "spec": ksvc["spec"]["template"]["spec"],
        },
    )
    why = "knserve.runtime: model iris failed to load: cannot load scikit-learn model"
    crashed = {"status": "False", "reason": "ExitCode1", "message": f"Container failed with: {why}"}
    revision["status"] = {
        "conditions": [{"type": "Ready", **crashed}, {"type": "ContainerHealthy", **crashed}]
    }
    kube.replace_status(REVISIONS, revision)
    failed = {"status": "False", "reason": "RevisionFailed", "message": "Revision failed"}
    ksvc["status"] = {
        "observedGeneration": ksvc["metadata"]["generation"],
        "latestCreatedRevisionName": "iris-predictor-00001",
        "conditions": [{"type": "Ready", **failed}],
    }
    kube.replace_status(SERVICES, ksvc)
    status = reconciler.reconcile("default", "iris")
    assert status is not None
    failure = status["modelStatus"]["lastFailureInfo"]
    assert (failure["reason"], failure["exitCode"], failure["message"]) == (
        "ModelLoadFailed",
        1,
        why,
    )
    assert failure["location"] == "iris-predictor-00001"
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"


def test_knatives_status_reaches_the_inferenceservice_and_canary_traffic_follows(
    kube: KubeClient,
) -> None:
    reconciler = Reconciler(kube)
    kube.apply(iris())
    reconciler.reconcile("default", "iris")
    knative_marks_ready(kube, "iris-predictor", "iris-predictor-00001")
    status = reconciler.reconcile("default", "iris")
    assert status is not None and conditions({"status": status})["Ready"] == "True"
    predictor = status["components"]["predictor"]
    assert predictor["url"] == "http://iris-predictor.default.example.com"
    assert predictor["latestRolledoutRevision"] == "iris-predictor-00001"
    # the cluster's domain, read off Knative's URL as KServe does
    assert status["url"] == "http://iris.default.example.com"
    assert status["address"]["url"] == "http://iris.default.svc.cluster.local"
    assert kube.get(ISVCS, "default", "iris")["status"] == status

    kube.apply(iris(canary=10, storage="gs://kfserving-examples/models/sklearn/2.0/model"))
    reconciler.reconcile("default", "iris")
    assert kube.get(SERVICES, "default", "iris-predictor")["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 10},
        {
            "tag": "prev",
            "revisionName": "iris-predictor-00001",
            "latestRevision": False,
            "percent": 90,
        },
    ]
    kube.apply(iris(storage="gs://kfserving-examples/models/sklearn/2.0/model"))  # promote
    reconciler.reconcile("default", "iris")
    assert kube.get(SERVICES, "default", "iris-predictor")["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 100}
    ]


def test_the_operators_bookkeeping_annotations_stay_out_of_the_revisions(kube: KubeClient) -> None:
    isvc = iris()
    isvc["metadata"]["annotations"] = {
        f"{ANNOTATION_PREFIX}/last-handled-configuration": "{}",
        "team.example.com/owner": "ml",
    }
    kube.apply(isvc)
    Reconciler(kube).reconcile("default", "iris")
    template = kube.get(SERVICES, "default", "iris-predictor")["spec"]["template"]
    assert template["metadata"]["annotations"]["team.example.com/owner"] == "ml"
    assert not [
        key for key in template["metadata"]["annotations"] if key.startswith(ANNOTATION_PREFIX)
    ]


def test_a_component_dropped_from_the_spec_loses_its_knative_service(kube: KubeClient) -> None:
    reconciler = Reconciler(kube)
    kube.apply(iris(transformer=True))
    reconciler.reconcile("default", "iris")
    kube.apply(iris())
    reconciler.reconcile("default", "iris")
    assert [s["metadata"]["name"] for s in kube.list(SERVICES, "default")] == ["iris-predictor"]


def test_an_untranslatable_inferenceservice_is_not_ready_with_the_reason(kube: KubeClient) -> None:
    isvc = iris()
    isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] = "cobol"
    kube.apply(isvc)
    status = Reconciler(kube).reconcile("default", "iris")
    assert status is not None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "no runtime found to support model format 'cobol'" in ready["message"]
    assert kube.list(SERVICES, "default") == []


def test_a_knative_service_of_someone_else_is_left_alone(kube: KubeClient) -> None:
    theirs = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "iris-predictor"},
        "spec": {"template": {"spec": {"containers": [{"image": "example/theirs"}]}}},
    }
    kube.apply(copy.deepcopy(theirs))
    kube.apply(iris())
    status = Reconciler(kube).reconcile("default", "iris")
    assert status is not None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ServiceConflict")
    image = kube.get(SERVICES, "default", "iris-predictor")["spec"]["template"]["spec"]
    assert image["containers"][0]["image"] == "example/theirs"


class _WithoutServingRuntimes:
    """A cluster where KServe's ServingRuntime CRD is not installed: the API server's 404."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and "/servingruntimes" in scope["path"]:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": "the server could not find the requested resource",
            }
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": json.dumps(status).encode()})
            return
        await self.app(scope, receive, send)


def test_without_the_servingruntime_crd_the_built_in_runtimes_serve(
    kube: KubeClient, switchboard: tuple[Switchboard, str]
) -> None:
    board, _ = switchboard
    board.app = _WithoutServingRuntimes(board.app)
    with pytest.raises(NotFound, match="install its CRD .*serving.kserve.io_servingruntimes.yaml"):
        kube.list(RUNTIMES, "default")
    kube.apply(iris())
    Reconciler(kube).reconcile("default", "iris")
    container = kube.get(SERVICES, "default", "iris-predictor")["spec"]["template"]["spec"]
    assert container["containers"][0]["image"] == "kserve/sklearnserver:v0.21.0"


def test_a_deleted_inferenceservice_reconciles_to_nothing(kube: KubeClient) -> None:
    assert Reconciler(kube).reconcile("default", "gone") is None
