"""What the control API tells clients about itself, as a Kubernetes API server does.

`/version`, `/apis` (the groups) and `/apis/{group}/{version}` (each kind's resource with its
verbs, short names, categories and singular name): kubectl builds its REST mapping from these,
which is what lets `kubectl get ksvc` or `kubectl get knative` find the kinds. Names come from the
CRDs the plane validates against, so they are the ones a cluster with the CRDs installed has.
"""

from __future__ import annotations

import platform
import re
from importlib import metadata
from typing import Any

from knserve.knative.apiserver.kinds import KINDS, Kind
from knserve.knative.apiserver.schema_validation import crd

# The Kubernetes API whose conventions the plane follows; kubectl warns when a server is more than
# one minor version from it, so it names a current release rather than a knserve version.
KUBERNETES_MAJOR, KUBERNETES_MINOR = "1", "32"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def crd_names(kind: Kind) -> dict[str, Any]:
    """The CRD's `spec.names` (plural, singular, shortNames, categories)."""
    return dict(crd(kind.crd_file)["spec"]["names"])


def crd_version(kind: Kind) -> dict[str, Any]:
    """The CRD's entry for the version the plane serves (schema, printer columns)."""
    for entry in crd(kind.crd_file)["spec"]["versions"]:
        if entry["name"] == kind.version:
            return dict(entry)
    raise LookupError(f"{kind.crd_file} has no version {kind.version}")


def version_info() -> dict[str, str]:
    """`/version`: the Kubernetes version whose API this serves, with knserve's in gitVersion."""
    try:
        own = metadata.version("knserve")
    except metadata.PackageNotFoundError:
        own = "unknown"
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+knserve-{own}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "knserve",
        "platform": f"{platform.system().lower()}/{arch}",
    }


def group_list() -> dict[str, Any]:
    """`/apis`: every group the plane serves, each with its versions."""
    groups: dict[str, set[str]] = {}
    for kind in KINDS.values():
        groups.setdefault(kind.group, set()).add(kind.version)
    listed = []
    for group, versions in sorted(groups.items()):
        # Kubernetes orders versions newest first (v1 > v1beta1 > v1alpha1): the first is preferred
        ordered = sorted(versions, key=_version_rank)
        listed.append(
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered],
                "preferredVersion": {
                    "groupVersion": f"{group}/{ordered[0]}",
                    "version": ordered[0],
                },
            }
        )
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed}


def _version_rank(version: str) -> tuple[int, int, int]:
    """Sort key, newest first as Kubernetes orders versions: GA, then beta, then alpha."""
    found = re.fullmatch(r"v(\d+)(?:(beta|alpha)(\d+))?", version)
    if found is None:
        return (3, 0, 0)
    major, stage, minor = found.groups()
    return ({None: 0, "beta": 1, "alpha": 2}[stage], -int(major), -int(minor or 0))


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """`/apis/{group}/{version}`: its kinds as resources (and their status subresources), or None
    when the plane serves no kind there."""
    resources: list[dict[str, Any]] = []
    for kind in KINDS.values():
        if kind.group != group or kind.version != version:
            continue
        names = crd_names(kind)
        resource: dict[str, Any] = {
            "name": kind.plural,
            "singularName": names.get("singular", kind.kind.lower()),
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": VERBS,
            "storageVersionHash": "",
        }
        short = names.get("shortNames") or list(kind.short_names)
        if short:
            resource["shortNames"] = short
        if names.get("categories"):
            resource["categories"] = names["categories"]
        resources.append(resource)
        resources.append(
            {
                "name": f"{kind.plural}/status",
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    if not resources:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": resources,
    }
