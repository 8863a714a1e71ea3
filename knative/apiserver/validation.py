"""Knative's own rules, beyond what the CRD schemas can say (pure functions of plain dicts).

Each check returns messages that name the field and say what to do; an empty list is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from knserve.knative.apiserver.autoscaling_annotations import (
    HPA,
    KPA,
    annotation_errors,
    lookup,
    no_autoscaling_annotation_errors,
)
from knserve.knative.apiserver.naming import is_dns1035_label, is_dns1123_label
from knserve.knative.apiserver.outlier_annotations import outlier_annotation_errors

if TYPE_CHECKING:
    from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig

Check = Callable[[dict[str, Any]], list[str]]


def name_errors(obj: dict[str, Any]) -> list[str]:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        return ["metadata.name is required"]
    if not is_dns1123_label(name):
        return [
            f"metadata.name {name!r} is not a DNS-1123 label: use at most 63 lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        ]
    return []


def traffic_errors(
    traffic: Iterable[dict[str, Any]], path: str, service: str | None = None
) -> list[str]:
    """Knative's rules for a traffic block (Service.spec.traffic, Route.spec.traffic)."""
    errors = []
    entries = list(traffic)
    total = 0
    tags: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"{path}[{index}]"
        name = entry.get("revisionName")
        latest = entry.get("latestRevision")
        if name and latest:
            errors.append(f"{where}: revisionName and latestRevision: true are exclusive; give one")
        if not name and latest is False:
            errors.append(f"{where}: latestRevision: false needs a revisionName")
        if (
            not name
            and latest is None
            and entry.get("configurationName") is None
            and service is None
        ):
            errors.append(f"{where}: give revisionName or latestRevision: true")
        percent = entry.get("percent")
        if percent is not None:
            if not isinstance(percent, int) or not 0 <= percent <= 100:
                errors.append(
                    f"{where}.percent is {percent!r}, it must be an integer from 0 to 100"
                )
            else:
                total += percent
        tag = entry.get("tag")
        if tag is not None:
            if not is_dns1035_label(tag):
                errors.append(
                    f"{where}.tag {tag!r} is not a DNS-1035 label: use lowercase letters, digits "
                    "and '-', starting with a letter (it becomes the first label of a host name)"
                )
            if tag in tags:
                errors.append(
                    f"{where}.tag {tag!r} is already used by {path}[{tags[tag]}]; tags must be unique"
                )
            tags.setdefault(tag, index)
        if name and service and not name.startswith(service + "-"):
            errors.append(
                f"{where}.revisionName {name!r} must start with the service's name, {service}-"
            )
    if entries and total != 100:
        errors.append(f"{path} percents sum to {total}, they must sum to 100")
    return errors


# Defaults the controller writes into a Revision's spec; a template that omits them is the same.
_REVISION_DEFAULTS = {"timeoutSeconds": 300, "containerConcurrency": 0}


def revision_reference_errors(
    obj: dict[str, Any], existing: dict[str, dict[str, Any]]
) -> list[str]:
    """Rules that need the revisions that exist (name -> spec): a template name already taken must
    be for the same spec (revisions are immutable). Traffic may name a revision that does not
    exist yet, as Knative's webhook allows: the Route's AllTrafficAssigned says it is missing."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    named = (template.get("metadata") or {}).get("name")
    errors = []
    if named in existing:
        had = {**_REVISION_DEFAULTS, **existing[named]}
        wants = {**_REVISION_DEFAULTS, **(template.get("spec") or {})}
        if had != wants:
            errors.append(
                f"spec.template.metadata.name {named!r} is an existing revision with a different "
                "spec; revisions are immutable: give the new template a new name (or none)"
            )
    return errors


def one_container_errors(obj: dict[str, Any]) -> list[str]:
    """The local plane's own limit (a replica is one process), not Knative's: on a cluster,
    Knative runs sidecars too."""
    template = (obj.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    if len(containers) != 1:
        return [
            f"spec.template.spec.containers has {len(containers)} containers; the local plane runs exactly one"
        ]
    return []


def service_errors(obj: dict[str, Any]) -> list[str]:
    errors = name_errors(obj)
    name = (obj.get("metadata") or {}).get("name", "")
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    tname = (template.get("metadata") or {}).get("name")
    if tname and not tname.startswith(name + "-"):
        errors.append(
            f"spec.template.metadata.name {tname!r} must start with the service's name, {name}-"
        )
    if spec.get("traffic"):
        errors += traffic_errors(spec["traffic"], "spec.traffic", name)
    return errors


def route_errors(obj: dict[str, Any]) -> list[str]:
    return name_errors(obj) + traffic_errors(
        (obj.get("spec") or {}).get("traffic") or [], "spec.traffic"
    )


def _annotations(meta: Any) -> dict[str, str]:
    found = (meta or {}).get("annotations") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def template_outlier_errors(obj: dict[str, Any]) -> list[str]:
    """The outlier detection annotations of a Service's or Configuration's revision template."""
    template = (obj.get("spec") or {}).get("template") or {}
    path = "spec.template.metadata.annotations"
    return outlier_annotation_errors(_annotations(template.get("metadata")), path)


def revision_outlier_errors(obj: dict[str, Any]) -> list[str]:
    """A Revision's outlier detection annotations."""
    return outlier_annotation_errors(_annotations(obj.get("metadata")), "metadata.annotations")


def template_autoscaling_errors(obj: dict[str, Any], config: AutoscalerConfig | None) -> list[str]:
    """Knative's webhook on a Service or Configuration: autoscaling annotations belong on the
    revision template, where they must pass `ValidateAnnotations`."""
    template = (obj.get("spec") or {}).get("template") or {}
    return no_autoscaling_annotation_errors(
        _annotations(obj.get("metadata")), "metadata.annotations"
    ) + annotation_errors(
        _annotations(template.get("metadata")), config, "spec.template.metadata.annotations"
    )


def revision_autoscaling_errors(obj: dict[str, Any], config: AutoscalerConfig | None) -> list[str]:
    """Knative's webhook on a Revision: its own annotations pass `ValidateAnnotations`."""
    return annotation_errors(_annotations(obj.get("metadata")), config, "metadata.annotations")


def route_autoscaling_errors(obj: dict[str, Any], config: AutoscalerConfig | None) -> list[str]:
    """Knative's webhook on a Route: no autoscaling annotations (they work on revisions only)."""
    return no_autoscaling_annotation_errors(
        _annotations(obj.get("metadata")), "metadata.annotations"
    )


def kpa_only_errors(obj: dict[str, Any]) -> list[str]:
    """The local plane's own limit: Knative's two autoscalers, the KPA and the HPA class. On a
    cluster a custom class scales the revision; here nothing would, so it would never serve."""
    meta = obj.get("metadata")
    path = "metadata.annotations"
    if obj.get("kind") != "Revision":
        meta, path = (
            ((obj.get("spec") or {}).get("template") or {}).get("metadata"),
            f"spec.template.{path}",
        )
    found = lookup(_annotations(meta), "class")
    if found is None or found[1] in (KPA, HPA):
        return []
    return [
        f"{path}.{found[0]} is {found[1]!r}; the local plane scales with Knative's KPA or HPA: "
        f"use {KPA} (the default) or {HPA}"
    ]
