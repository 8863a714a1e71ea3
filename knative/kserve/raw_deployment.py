"""KServe's Standard mode (`serving.kserve.io/deploymentMode: RawDeployment`): no Knative.

On a cluster KServe's raw reconcilers make, per component, a Deployment, a Service and (with the
default `serving.kserve.io/autoscalerClass: hpa`) a HorizontalPodAutoscaler
(pkg/controller/v1beta1/inferenceservice/reconcilers/{deployment,service,hpa}). `raw_objects`
builds those three from the Knative Service the translation made, for `knserve export`:

- the HPA as KServe's `createHPA`: min `minReplicas` (at least 1), max `maxReplicas` but never
  below min (so an unset maxReplicas pins the count at min), one Resource metric: `scaleMetric`
  cpu → Utilization `scaleTarget` (default 80 %), memory → Utilization `scaleTarget` (none
  without a target, which Kubernetes defaults to 80 % CPU); `behavior: {}`;
- autoscalerClass `none` → no HPA and `replicas: minReplicas`; `external` → no HPA;
- the Service `{component}` on port 80 to the container's first port (else 8080), selecting
  `app: isvc.{component}`.

On the local plane the component still runs as a Knative Service, with what raw mode means
(`raw_autoscaling_annotations`): Knative's HPA class with the same bounds and target (so no
scale to zero), and a memory percentage turned into the MiB per replica it is of the request.
What raw mode cannot do here is refused at admission, with the reason
(`knative.apiserver.isvc_validation`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from knserve.knative.apiserver.isvc_validation import (
    AUTOSCALER_CLASS_ANNOTATION,
    DEPLOYMENT_MODE_ANNOTATION,
    RAW_MODES,
)
from knserve.knative.apiserver.quantity import parse_quantity

DEFAULT_CPU_UTILIZATION = 80  # KServe's constants.DefaultCPUUtilization
KNATIVE_PREFIX = "autoscaling.knative.dev/"
MIB = 1024 * 1024
HTTP_PORT = 8080  # KServe's InferenceServiceDefaultHttpPort


def is_raw(annotations: Mapping[str, str]) -> bool:
    """Whether the InferenceService asks for KServe's Standard (raw Deployment) mode."""
    return annotations.get(DEPLOYMENT_MODE_ANNOTATION) in RAW_MODES


def _bounds(comp: Mapping[str, Any]) -> tuple[int, int]:
    """KServe's createHPA bounds: min at least 1, max never below min."""
    low = comp.get("minReplicas")
    low = 1 if low is None or int(low) < 1 else int(low)
    high = int(comp.get("maxReplicas") or 0)
    return low, max(high, low)


def _memory_request(container: Mapping[str, Any]) -> float | None:
    resources = container.get("resources") or {}
    wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return parse_quantity(wanted["memory"]) if "memory" in wanted else None


def raw_autoscaling_annotations(
    comp: Mapping[str, Any], annotations: Mapping[str, str], container: Mapping[str, Any]
) -> dict[str, str]:
    """The Knative HPA-class annotations that scale a raw-mode component as KServe's HPA would.

    Raises ValueError when a memory percentage has no request to be a percentage of."""
    low, high = _bounds(comp)
    out = {f"{KNATIVE_PREFIX}class": "hpa.autoscaling.knative.dev"}
    if annotations.get(AUTOSCALER_CLASS_ANNOTATION) in ("none", "external"):
        high = low  # no HPA: the Deployment keeps minReplicas
    out[f"{KNATIVE_PREFIX}min-scale"] = str(low)
    out[f"{KNATIVE_PREFIX}max-scale"] = str(high)
    metric, target = comp.get("scaleMetric") or "cpu", comp.get("scaleTarget")
    if metric == "memory" and target is not None:
        request = _memory_request(container)
        if request is None:
            raise ValueError(
                "scaleTarget for memory is a percentage of the container's memory request; set "
                "resources.requests.memory (or limits.memory)"
            )
        out[f"{KNATIVE_PREFIX}metric"] = "memory"
        out[f"{KNATIVE_PREFIX}target"] = str(max(1, math.floor(request * int(target) / 100 / MIB)))
    else:  # cpu, or memory without a target (Kubernetes' default metric: 80 % CPU)
        cpu = int(target) if metric == "cpu" and target is not None else DEFAULT_CPU_UTILIZATION
        out[f"{KNATIVE_PREFIX}metric"] = "cpu"
        out[f"{KNATIVE_PREFIX}target"] = str(cpu)
    return out


def hpa_metrics(comp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """KServe's getHPAMetrics for `scaleMetric`/`scaleTarget`."""
    metric, target = comp.get("scaleMetric") or "cpu", comp.get("scaleTarget")
    if metric == "cpu":
        utilization = int(target) if target is not None else DEFAULT_CPU_UTILIZATION
    elif target is not None:
        utilization = int(target)
    else:
        return []  # KServe sets no memory default; Kubernetes then scales on 80 % CPU
    return [
        {
            "type": "Resource",
            "resource": {
                "name": metric,
                "target": {"type": "Utilization", "averageUtilization": utilization},
            },
        }
    ]


def raw_objects(
    ksvc: Mapping[str, Any], comp: Mapping[str, Any], annotations: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The Deployment, Service and HPA KServe makes for a component (module docstring)."""
    meta = ksvc["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    template = copy.deepcopy(ksvc["spec"]["template"])
    app = {"app": f"isvc.{name}"}
    kept = {
        k: v
        for k, v in (template["metadata"].get("annotations") or {}).items()
        if not k.startswith(KNATIVE_PREFIX)
    }
    pod_spec = template["spec"]
    for knative_only in ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds"):
        pod_spec.pop(knative_only, None)
    owner = {"ownerReferences": meta["ownerReferences"]} if meta.get("ownerReferences") else {}
    labels = {**template["metadata"].get("labels", {}), **app}
    object_meta = {"name": name, "namespace": namespace, "labels": labels, "annotations": kept}
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(app)},
        "template": {"metadata": {"labels": labels, "annotations": kept}, "spec": pod_spec},
    }
    if comp.get("deploymentStrategy") is not None:
        deployment_spec["strategy"] = copy.deepcopy(comp["deploymentStrategy"])
    autoscaler = annotations.get(AUTOSCALER_CLASS_ANNOTATION, "hpa")
    low, high = _bounds(comp)
    if autoscaler == "none":
        deployment_spec["replicas"] = low
    ports = pod_spec["containers"][0].get("ports") or []
    if ports:
        service_ports = [
            {
                "name": ports[0].get("name") or name,
                "port": 80,
                "targetPort": ports[0]["containerPort"],
                "protocol": ports[0].get("protocol", "TCP"),
            }
        ]
    else:
        service_ports = [{"name": name, "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"}]
    objects = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**copy.deepcopy(object_meta), **owner},
            "spec": deployment_spec,
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**copy.deepcopy(object_meta), **owner},
            "spec": {"selector": dict(app), "ports": service_ports},
        },
    ]
    if autoscaler == "hpa":
        objects.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {**copy.deepcopy(object_meta), **owner},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": low,
                    "maxReplicas": high,
                    "metrics": hpa_metrics(comp),
                    "behavior": {},
                },
            }
        )
    return objects
