"""InferenceGraph → one Knative Service running the router, and the graph's status: both targets.

As KServe's InferenceGraph controller (serverless mode):

- every step that names an InferenceService (`serviceName`) gets the `serviceUrl` KServe's
  `GetPredictorEndpoint` gives it: the InferenceService's `status.address.url` plus its predict
  path (`/v1/models/{model}:predict`, or `/v2/models/{model}/infer` for protocol v2), the model
  named as KServe names it (`--model_name` in a transformer's or the predictor's args, MLServer's
  `MLSERVER_MODEL_NAME`, else the InferenceService's name). An InferenceService that does not
  exist or has no address yet leaves the graph not Ready with the reason (`resolve_steps`);
- the Knative Service is named after the graph, labelled `serving.kserve.io/inferencegraph` and
  `serving.kserve.io/kind: InferenceGraph`, owned by the graph; its one container is KServe's
  router image with `--graph-json` (the resolved spec), the router's readiness probe on
  `/readyz` port 8080, and `PROPAGATE_HEADERS` when headers are to be propagated; `minReplicas`
  (default 1), `maxReplicas`, `scaleTarget`, `scaleMetric` become Knative's autoscaling
  annotations and `timeout` the revision's `timeoutSeconds` (`router_service`);
- the status (`graph_status`) carries the Knative Service's conditions and, once it is Ready,
  its URL, with KServe's `Stopped: False`.

On the local plane the image `kserve/router` runs knserve's router (`knative.router`), which
listens on `$PORT`; on a cluster it is KServe's own router image.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from knserve.knative.apiserver.store import now

__all__ = [
    "GRAPH_LABEL",
    "KIND",
    "ROUTER_IMAGE",
    "GraphNotReady",
    "graph_owner",
    "graph_status",
    "predictor_endpoint",
    "referenced_services",
    "resolve_steps",
    "router_service",
]

API_VERSION = "serving.kserve.io/v1alpha1"
KIND = "InferenceGraph"
GRAPH_LABEL = "serving.kserve.io/inferencegraph"
WORKLOAD_KIND_LABEL = "serving.kserve.io/kind"
# KServe's inferenceservice-config `router.image`, of the KServe release the stock runtimes are from
ROUTER_IMAGE = "kserve/router:v0.21.0"
ROUTER_PORT = 8080
READINESS_PATH = "/readyz"
PROPAGATE_HEADERS = "PROPAGATE_HEADERS"
_NOT_PROPAGATED = ("kubectl.kubernetes.io/last-applied-configuration",)


class GraphNotReady(Exception):
    """A step's InferenceService is missing or not ready: `reason` and a message for status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def referenced_services(graph: Mapping[str, Any]) -> set[str]:
    """The InferenceServices the graph's steps name."""
    nodes = (graph.get("spec") or {}).get("nodes") or {}
    return {
        step["serviceName"]
        for node in nodes.values()
        for step in (node or {}).get("steps") or []
        if step.get("serviceName")
    }


def _model_name_from_args(args: list[str]) -> str:
    for index, arg in enumerate(args):
        if arg.startswith("--model_name="):
            return arg.split("=", 1)[1]
        if arg == "--model_name" and index + 1 < len(args):
            return args[index + 1]
    return ""


def _model_name(isvc: Mapping[str, Any]) -> str:
    """KServe's GetModelName."""
    spec = isvc.get("spec") or {}
    transformer = spec.get("transformer") or {}
    if transformer.get("containers"):
        found = _model_name_from_args(transformer["containers"][0].get("args") or [])
        if found:
            return found
    predictor = spec.get("predictor") or {}
    model = predictor.get("model")
    if model:
        for env in model.get("env") or []:
            if env.get("name") == "MLSERVER_MODEL_NAME":
                return str(env.get("value") or "")
        found = _model_name_from_args(model.get("args") or [])
    elif predictor.get("containers"):
        found = _model_name_from_args(predictor["containers"][0].get("args") or [])
    else:
        found = ""
    return found or isvc["metadata"]["name"]


def predictor_endpoint(isvc: Mapping[str, Any]) -> str | None:
    """KServe's GetPredictorEndpoint: the URL a graph step posts to; None until the
    InferenceService has an address."""
    address = ((isvc.get("status") or {}).get("address") or {}).get("url")
    if not address:
        return None
    spec = isvc.get("spec") or {}
    component = spec.get("transformer") or spec.get("predictor") or {}
    model = component.get("model") or {}
    protocol = model.get("protocolVersion") or component.get("protocolVersion") or "v1"
    name = _model_name(isvc)
    if protocol == "v2":
        return f"{address}/v2/models/{name}/infer"
    if protocol == "v1":
        return f"{address}/v1/models/{name}:predict"
    return str(address)


def resolve_steps(
    graph: Mapping[str, Any], isvcs: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, Any]:
    """The graph's spec with every `serviceName` step given its `serviceUrl` (one it already
    has is kept, as KServe does). `isvcs` maps each referenced name to the InferenceService, or
    None when it does not exist; a missing or unaddressed one raises GraphNotReady."""
    spec = copy.deepcopy(dict(graph.get("spec") or {}))
    for node in (spec.get("nodes") or {}).values():
        for step in (node or {}).get("steps") or []:
            name = step.get("serviceName")
            if not name or step.get("serviceUrl"):
                continue
            isvc = isvcs.get(name)
            if isvc is None:
                raise GraphNotReady(
                    "InferenceServiceNotFound",
                    f"InferenceService {name!r} of the graph does not exist; create it, or fix "
                    "the step's serviceName",
                )
            url = predictor_endpoint(isvc)
            if url is None:
                raise GraphNotReady(
                    "InferenceServiceNotReady",
                    f"service {name} is not ready (it has no address yet)",
                )
            step["serviceUrl"] = url
    return spec


def router_service(
    graph: Mapping[str, Any],
    resolved: Mapping[str, Any],
    propagate_headers: list[str] | None = None,
    image: str = ROUTER_IMAGE,
    env: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The router's Knative Service for `graph`, its spec already `resolve_steps`'d; `env` is
    added to the container's (an async graph's broker, `knative.kserve.graph_chain`)."""
    meta = graph["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    spec = graph.get("spec") or {}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_PROPAGATED
    }
    annotations.setdefault("autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev")
    prefix = "autoscaling.knative.dev/"
    if spec.get("scaleTarget") is not None:
        annotations[f"{prefix}target"] = str(int(spec["scaleTarget"]))
    if spec.get("scaleMetric") is not None:
        annotations[f"{prefix}metric"] = str(spec["scaleMetric"])
    min_replicas = spec.get("minReplicas")
    annotations[f"{prefix}min-scale"] = str(1 if min_replicas is None else int(min_replicas))
    if spec.get("maxReplicas"):
        annotations[f"{prefix}max-scale"] = str(int(spec["maxReplicas"]))
    labels = {**(meta.get("labels") or {}), GRAPH_LABEL: name, WORKLOAD_KIND_LABEL: KIND}
    container: dict[str, Any] = {
        "image": image,
        "args": ["--graph-json", json.dumps(resolved, separators=(",", ":"))],
        "ports": [{"containerPort": ROUTER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": READINESS_PATH, "port": ROUTER_PORT, "scheme": "HTTP"},
            "initialDelaySeconds": 5,
            "timeoutSeconds": 2,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
    }
    if spec.get("resources"):
        container["resources"] = copy.deepcopy(spec["resources"])
    container_env = list(env or [])
    if propagate_headers:
        container_env.insert(0, {"name": PROPAGATE_HEADERS, "value": ",".join(propagate_headers)})
    if container_env:
        container["env"] = container_env
    template_spec: dict[str, Any] = {"containers": [container]}
    if spec.get("timeout") is not None:
        template_spec["timeoutSeconds"] = int(spec["timeout"])
    for field in ("affinity", "tolerations", "nodeSelector", "serviceAccountName"):
        if spec.get(field):
            template_spec[field] = copy.deepcopy(spec[field])
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [graph_owner(graph)],
        },
        "spec": {
            "template": {
                "metadata": {"labels": dict(labels), "annotations": annotations},
                "spec": template_spec,
            }
        },
    }


def graph_owner(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The controller owner reference to `graph` (without a uid until it has one: exported)."""
    meta = graph["metadata"]
    owner = {
        "apiVersion": graph.get("apiVersion", API_VERSION),
        "kind": KIND,
        "name": meta["name"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    if meta.get("uid"):
        owner["uid"] = meta["uid"]
    return owner


def graph_status(
    graph: Mapping[str, Any],
    ksvc: Mapping[str, Any] | None,
    problem: GraphNotReady | None = None,
    extra_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The graph's status from its router's Knative Service (None: not created yet), or from
    `problem` when a step's InferenceService keeps the router from being made."""
    previous = graph.get("status") or {}
    old = {c.get("type"): c for c in previous.get("conditions") or []}
    status: dict[str, Any] = {"observedGeneration": graph["metadata"].get("generation", 1)}
    conditions: list[dict[str, Any]] = []
    if problem is not None:
        conditions.append(_condition(old, "Ready", "False", problem.reason, problem.message))
    elif ksvc is None:
        conditions.append(
            _condition(old, "Ready", "Unknown", "RouterPending", "the router is being created")
        )
    else:
        ksvc_status = ksvc.get("status") or {}
        current = ksvc_status.get("observedGeneration") == ksvc["metadata"].get("generation")
        for c in ksvc_status.get("conditions") or []:
            if current:
                conditions.append(dict(c))
            else:
                conditions.append(
                    _condition(
                        old,
                        c["type"],
                        "Unknown",
                        "Reconciling",
                        "the router's Knative Service has not observed its latest spec yet",
                    )
                )
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("status") == "True" and ksvc_status.get("url"):
            status["url"] = ksvc_status["url"]
        if not conditions:
            conditions.append(
                _condition(old, "Ready", "Unknown", "RouterPending", "the router is starting")
            )
    conditions.append(_condition(old, "Stopped", "False", None, None))
    status["conditions"] = conditions
    status["deploymentMode"] = "Serverless"
    if extra_annotations:
        status["annotations"] = dict(extra_annotations)
    return status


def _condition(
    old: Mapping[Any, Mapping[str, Any]],
    ctype: str,
    value: str,
    reason: str | None,
    message: str | None,
) -> dict[str, Any]:
    before = old.get(ctype) or {}
    same = before.get("status") == value and before.get("reason") == reason
    out: dict[str, Any] = {"type": ctype, "status": value}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    out["lastTransitionTime"] = before.get("lastTransitionTime") if same else now()
    return {k: v for k, v in out.items() if v is not None}
