"""The Knative Service a function becomes when it is deployed (`knserve func deploy`).

func.yaml already holds everything a Service needs, in func's own keys: `image` (set by the
build), `run.envs` (the container's env), `deploy.namespace`, `deploy.annotations`,
`deploy.options.scale` (autoscaling annotations, as func maps them) and
`deploy.healthEndpoints.readiness` (the readiness probe, so traffic waits for the model to load).
"""

from __future__ import annotations

from typing import Any

from knserve.functions import funcyaml
from knserve.functions.errors import FunctionError

SCALE = "autoscaling.knative.dev/"
# func.yaml's deploy.options.scale key -> Knative's annotation (func's own mapping)
SCALE_KEYS = {
    "min": "min-scale",
    "max": "max-scale",
    "metric": "metric",
    "target": "target",
    "utilization": "target-utilization-percentage",
}


def service_for(spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """The `serving.knative.dev/v1` Service for the function described by `spec` (func.yaml)."""
    image = spec.get("image")
    if not image:
        raise FunctionError(f"function {spec['name']!r} has no image yet: run `knserve func build`")
    deploy = spec.get("deploy") or {}
    annotations = {str(k): str(v) for k, v in (deploy.get("annotations") or {}).items()}
    for key, value in ((deploy.get("options") or {}).get("scale") or {}).items():
        if key in SCALE_KEYS and value is not None:
            annotations[SCALE + SCALE_KEYS[key]] = str(value)
    container: dict[str, Any] = {"image": image}
    envs = funcyaml.envs(spec)
    if envs:
        container["env"] = [{"name": k, "value": v} for k, v in envs.items()]
    readiness = (deploy.get("healthEndpoints") or {}).get("readiness")
    if readiness:
        container["readinessProbe"] = {"httpGet": {"path": readiness}}
    template: dict[str, Any] = {"spec": {"containers": [container]}}
    if annotations:
        template["metadata"] = {"annotations": annotations}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": spec["name"],
            "namespace": namespace or deploy.get("namespace") or "default",
            "labels": {"function.knative.dev/name": spec["name"]},
        },
        "spec": {"template": template},
    }
