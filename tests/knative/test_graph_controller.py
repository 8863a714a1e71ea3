"""The InferenceGraph kind and controller over a real SQLite store: KServe's admission rules,
steps resolved from InferenceServices' addresses, the router's Knative Service, the status, and
the export for a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from knserve.knative.apiserver.errors import Invalid
from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.store import Store
from knserve.knative.cli.export import cli as export_cli
from knserve.knative.kserve.graph import ROUTER_IMAGE
from knserve.knative.kserve.graph_controller import InferenceGraphController
from knserve.knative.kube.client import KubeClient
from knserve.knative.kube.operator import GraphReconciler

GRAPHS, ISVCS, SERVICES = (named(k) for k in ("inferencegraphs", "inferenceservices", "services"))


def graph(name: str = "chain", **nodes: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodes": nodes
            or {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {"serviceName": "first"},
                        {"serviceName": "second", "data": "$response"},
                    ],
                }
            }
        },
    }


def isvc(name: str, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"predictor": predictor or {"sklearn": {"storageUri": "file:///models/iris"}}},
    }


def addressed(store: Store, name: str) -> None:
    found = store.get(ISVCS, "default", name)
    url = f"http://{name}.default.svc.cluster.local"
    store.write_status(ISVCS, found, {"address": {"url": url}, "url": url})


def router_spec(store: Store, name: str = "chain") -> dict[str, Any]:
    ksvc = store.get(SERVICES, "default", name)
    args = ksvc["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "--graph-json"
    return json.loads(args[1])


# ---- admission --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ({"first": {"routerType": "Sequence", "steps": []}}, "root node not found"),
        (
            {"root": {"routerType": "Splitter", "steps": [{"serviceName": "a", "weight": 30}]}},
            "the sum of traffic weights for all routing targets should be 100",
        ),
        (
            {"root": {"routerType": "Splitter", "steps": [{"serviceName": "a"}]}},
            "Route[a] missing the 'Weight'",
        ),
        (
            {"root": {"routerType": "Sequence", "steps": [{"name": "x"}]}},
            'Step 0 ("x") in node "root" of InferenceGraph "chain" does not specify',
        ),
        (
            {"root": {"routerType": "Sequence", "steps": [{"serviceName": "a", "nodeName": "b"}]}},
            "specifies more than one of nodeName, serviceName, serviceUrl",
        ),
        (
            {
                "root": {
                    "routerType": "Ensemble",
                    "steps": [{"serviceName": "a", "name": "s"}, {"serviceName": "b", "name": "s"}],
                }
            },
            'contains more than one step with name "s"',
        ),
        (
            {"root": {"routerType": "Sequence", "steps": [{"nodeName": "nowhere"}]}},
            "names node 'nowhere', which the graph does not have",
        ),
        ({"root": {"routerType": "Loop", "steps": []}}, "routerType"),  # the schema's enum
    ],
)
def test_kserves_admission_rules(store: Store, nodes: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as raised:
        store.create(GRAPHS, graph(**nodes))
    assert message in raised.value.message


def test_a_graph_name_kserve_refuses(store: Store) -> None:
    with pytest.raises(Invalid, match="a InferenceGraph name must consist of lower case"):
        store.create(GRAPHS, graph("9lives"))


def test_the_async_annotation_needs_a_sequence_root(store: Store) -> None:
    doc = graph(root={"routerType": "Ensemble", "steps": [{"serviceName": "a"}]})
    doc["metadata"]["annotations"] = {"knserve.dev/async-broker": "default"}
    with pytest.raises(Invalid, match="the root node must be a Sequence"):
        store.create(GRAPHS, doc)


# ---- reconciling ------------------------------------------------------------------------------


async def test_the_graph_waits_for_its_inferenceservices_then_gets_its_router(
    store: Store,
) -> None:
    controller = InferenceGraphController(store, propagate_headers=["Authorization"])
    store.create(GRAPHS, graph())
    await controller.reconcile("default", "chain")
    status = store.get(GRAPHS, "default", "chain")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InferenceServiceNotFound")
    assert "'first'" in ready["message"]
    assert store.find(SERVICES, "default", "chain") is None

    store.create(ISVCS, isvc("first"))
    store.create(
        ISVCS,
        isvc("second", model={"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2"}),
    )
    await controller.reconcile("default", "chain")
    ready = next(
        c
        for c in store.get(GRAPHS, "default", "chain")["status"]["conditions"]
        if c["type"] == "Ready"
    )
    assert ready["reason"] == "InferenceServiceNotReady"

    addressed(store, "first")
    addressed(store, "second")
    await controller.reconcile("default", "chain")
    steps = router_spec(store)["nodes"]["root"]["steps"]
    assert steps == [
        {
            "serviceName": "first",
            "serviceUrl": "http://first.default.svc.cluster.local/v1/models/first:predict",
        },
        {
            "serviceName": "second",
            "data": "$response",
            "serviceUrl": "http://second.default.svc.cluster.local/v2/models/second/infer",
        },
    ]
    ksvc = store.get(SERVICES, "default", "chain")
    assert ksvc["metadata"]["labels"]["serving.kserve.io/inferencegraph"] == "chain"
    assert ksvc["metadata"]["ownerReferences"][0]["kind"] == "InferenceGraph"
    template = ksvc["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    container = template["spec"]["containers"][0]
    assert container["image"] == ROUTER_IMAGE
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": 8080,
        "scheme": "HTTP",
    }
    assert container["env"] == [{"name": "PROPAGATE_HEADERS", "value": "Authorization"}]

    # the router's Knative Service becoming Ready makes the graph Ready with its URL
    url = "http://chain.default.localhost"
    store.write_status(
        SERVICES,
        ksvc,
        {
            "observedGeneration": ksvc["metadata"]["generation"],
            "url": url,
            "conditions": [
                {"type": t, "status": "True"}
                for t in ("Ready", "ConfigurationsReady", "RoutesReady")
            ],
        },
    )
    await controller.reconcile("default", "chain")
    status = store.get(GRAPHS, "default", "chain")["status"]
    assert status["url"] == url
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "ConfigurationsReady": "True",
        "RoutesReady": "True",
        "Stopped": "False",
    }

    # deleting the graph deletes its router
    store.delete(GRAPHS, "default", "chain")
    assert store.find(SERVICES, "default", "chain") is None


async def test_graph_spec_fields_reach_the_router(store: Store) -> None:
    doc = graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": "http://x/predict"}]})
    doc["spec"].update(minReplicas=0, maxReplicas=3, scaleTarget=5, scaleMetric="rps", timeout=30)
    store.create(GRAPHS, doc)
    await InferenceGraphController(store).reconcile("default", "chain")
    template = store.get(SERVICES, "default", "chain")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/max-scale"] == "3"
    assert annotations["autoscaling.knative.dev/target"] == "5"
    assert annotations["autoscaling.knative.dev/metric"] == "rps"
    assert template["spec"]["timeoutSeconds"] == 30


async def test_a_service_of_someone_else_with_the_graphs_name_is_a_conflict(store: Store) -> None:
    store.create(
        SERVICES,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "chain", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}},
        },
    )
    store.create(GRAPHS, graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": "u"}]}))
    await InferenceGraphController(store).reconcile("default", "chain")
    ready = store.get(GRAPHS, "default", "chain")["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "ServiceConflict")


# ---- export for a cluster ---------------------------------------------------------------------


def test_export_gives_kserves_router_image_and_resolved_steps(tmp_path: Path) -> None:
    docs = [
        isvc("first"),
        isvc("second", model={"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2"}),
        graph(),
    ]
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = CliRunner().invoke(export_cli, ["-f", str(path), "--target", "kube", "-o", "json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)["items"]
    router = next(i for i in items if i["metadata"]["name"] == "chain")
    container = router["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == ROUTER_IMAGE
    spec = json.loads(container["args"][1])
    urls = [s["serviceUrl"] for s in spec["nodes"]["root"]["steps"]]
    assert urls == [
        "http://first.default.svc.cluster.local/v1/models/first:predict",
        "http://second.default.svc.cluster.local/v2/models/second/infer",
    ]
    assert "ownerReferences" not in router["metadata"]
    # and what is exported is a valid Knative Service
    assert named("services").errors(router, local_plane=False) == []


# ---- the kopf operator's reconciler on a Kubernetes API ---------------------------------------


def test_the_operator_reconciles_a_graph_with_the_same_decision(kube: KubeClient) -> None:
    kube.apply(isvc("first"))
    kube.apply(graph(root={"routerType": "Sequence", "steps": [{"serviceName": "first"}]}))
    reconciler = GraphReconciler(kube)
    status = reconciler.reconcile("default", "chain")
    assert status is not None
    assert status["conditions"][0]["reason"] == "InferenceServiceNotReady"
    found = kube.get(ISVCS, "default", "first")
    found["status"] = {"address": {"url": "http://first.default.svc.cluster.local"}}
    kube.replace_status(ISVCS, found)
    reconciler.reconcile("default", "chain")
    router = kube.get(SERVICES, "default", "chain")
    container = router["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == ROUTER_IMAGE
    assert json.loads(container["args"][1])["nodes"]["root"]["steps"][0]["serviceUrl"] == (
        "http://first.default.svc.cluster.local/v1/models/first:predict"
    )
    owner = router["metadata"]["ownerReferences"][0]
    assert owner["uid"] == kube.get(GRAPHS, "default", "chain")["metadata"]["uid"]
    conditions = kube.get(GRAPHS, "default", "chain")["status"]["conditions"]
    assert conditions[0]["type"] == "Ready" and conditions[0]["status"] == "Unknown"
