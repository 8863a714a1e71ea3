"""The Knative Service a function becomes when it is deployed (`knserve func deploy`).

func.yaml already holds everything a Service needs, in func's own keys: `image` (set by the
build), `run.envs` (the container's env), `deploy.namespace`, `deploy.annotations`,
`deploy.options.scale` (autoscaling annotations, as func maps them) and
`deploy.healthEndpoints.readiness` (the readiness probe, so traffic waits for the model to load).

`deploy.subscriptions` (`[{source: BROKER, filters: {attribute: value}}]`) become Triggers, as
Knative func's deployer makes them: one per subscription, named `{function}-function-trigger-{i}`,
on broker `source`, with the filters as `spec.filter.attributes` (exact match) and the function's
Service as the subscriber, owned by that Service (deleting it deletes them). Unlike func, which
only creates them, `func deploy` also updates changed ones and deletes those no longer listed
(found by the `function.knative.dev/name` label).
"""

from __future__ import annotations

from typing import Any

from knserve.functions import funcyaml
from knserve.functions.errors import FunctionError

SCALE = "autoscaling.knative.dev/"
FUNCTION_LABEL = "function.knative.dev/name"
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
            "labels": {FUNCTION_LABEL: spec["name"]},
        },
        "spec": {"template": template},
    }


def trigger_name(function: str, index: int) -> str:
    """func's name for the Trigger of the function's `index`-th subscription (from 0)."""
    return f"{function}-function-trigger-{index}"


def triggers_for(
    spec: dict[str, Any], namespace: str | None = None, owner: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The `eventing.knative.dev/v1` Triggers for the function's `deploy.subscriptions`.

    `owner` is the function's Service as the API returned it (with its uid): when given, each
    Trigger names it in `ownerReferences`, as func's do.
    """
    name = spec["name"]
    deploy = spec.get("deploy") or {}
    namespace = namespace or deploy.get("namespace") or "default"
    triggers = []
    for index, subscription in enumerate(deploy.get("subscriptions") or []):
        broker = subscription.get("source")
        if not broker:
            raise FunctionError(
                f"deploy.subscriptions[{index}] of function {name!r} needs a source (the broker)"
            )
        metadata: dict[str, Any] = {
            "name": trigger_name(name, index),
            "namespace": namespace,
            "labels": {FUNCTION_LABEL: name},
        }
        if owner is not None:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": owner.get("apiVersion", "serving.knative.dev/v1"),
                    "kind": owner.get("kind", "Service"),
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ]
        trigger_spec: dict[str, Any] = {
            "broker": str(broker),
            "subscriber": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}
            },
        }
        filters = {str(k): str(v) for k, v in (subscription.get("filters") or {}).items()}
        if filters:
            trigger_spec["filter"] = {"attributes": filters}
        triggers.append(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": metadata,
                "spec": trigger_spec,
            }
        )
    return triggers
