"""The objects a Service owns, as Knative's service and configuration reconcilers make them
(pkg/reconciler/service/resources, pkg/reconciler/configuration/resources) (pure).

- the Configuration and the Route named after the Service, owned by it, labelled with it;
- a Revision of the Configuration's template, named `{service}-{generation:05d}` or as
  `spec.template.metadata.name` says, with the defaults Knative's webhook fills in;
- the Route's traffic, `latestRevision: true` (the default when no traffic is given) pointing at
  the Configuration.
"""

from __future__ import annotations

import copy
from typing import Any

SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
DEFAULT_TIMEOUT = 300
# Revision fields the webhook defaults: not part of what makes two templates differ.
DEFAULTED = ("timeoutSeconds", "containerConcurrency")

Resource = dict[str, Any]


def owner_reference(obj: Resource) -> Resource:
    """The controller owner reference to `obj`."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned(
    kind: str,
    owner: Resource,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> Resource:
    """A serving.knative.dev/v1 object's head: kind, name, namespace, labels, owner."""
    metadata: Resource = {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels,
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    metadata["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "serving.knative.dev/v1", "kind": kind, "metadata": metadata}


def configuration_labels(svc: Resource) -> dict[str, str]:
    meta = svc["metadata"]
    return {**(meta.get("labels") or {}), SERVICE_LABEL: meta["name"]}


def make_configuration(svc: Resource) -> Resource:
    """The Service's Configuration: its template, its labels."""
    configuration = _owned("Configuration", svc, svc["metadata"]["name"], configuration_labels(svc))
    configuration["spec"] = {"template": copy.deepcopy(svc["spec"]["template"])}
    return configuration


def make_revision(
    config: Resource, service: str, rev_name: str, template: Resource, generation: int
) -> Resource:
    """A Revision of `config`'s `template` at `generation`, with Knative's defaults."""
    tmeta = template.get("metadata") or {}
    labels = {
        **(tmeta.get("labels") or {}),
        SERVICE_LABEL: service,
        CONFIGURATION_LABEL: service,
        GENERATION_LABEL: str(generation),
    }
    annotations = dict(tmeta.get("annotations") or {})
    revision = _owned("Revision", config, rev_name, labels, annotations)
    spec: dict[str, Any] = copy.deepcopy(template.get("spec") or {})
    spec.setdefault("timeoutSeconds", DEFAULT_TIMEOUT)
    spec.setdefault("containerConcurrency", 0)
    revision["spec"] = spec
    return revision


def same_template(revision_spec: Resource, template_spec: Resource | None) -> bool:
    """Whether a Revision was made from this template (the webhook's defaults aside)."""

    def significant(spec: Resource) -> Resource:
        return {k: v for k, v in spec.items() if k not in DEFAULTED}

    return significant(revision_spec) == significant(template_spec or {})


def name_taken(rev_name: str) -> str:
    """Why a Service may not reuse a revision name for a different template (as the webhook says)."""
    return (
        f"revision name {rev_name!r} is already used by a different template; revisions are "
        "immutable: give spec.template.metadata.name a new name or remove it"
    )


def desired_traffic(svc: Resource) -> list[Resource]:
    """The Route's traffic: the Service's, `latestRevision` entries pointing at its Configuration."""
    traffic = svc["spec"].get("traffic") or [{"latestRevision": True, "percent": 100}]
    out = []
    for entry in traffic:
        entry = dict(entry)
        if entry.get("latestRevision", not entry.get("revisionName")):
            entry.pop("revisionName", None)
            entry["configurationName"] = svc["metadata"]["name"]
            entry["latestRevision"] = True
        out.append(entry)
    return out


def make_route(svc: Resource) -> Resource:
    """The Service's Route."""
    route = _owned("Route", svc, svc["metadata"]["name"], {SERVICE_LABEL: svc["metadata"]["name"]})
    route["spec"] = {"traffic": desired_traffic(svc)}
    return route


def generation_of(revision: Resource) -> int:
    """The Configuration generation a Revision was made at (0 when unlabelled)."""
    return int(revision["metadata"]["labels"].get(GENERATION_LABEL, "0"))
