"""Names as Knative makes them (pure functions)."""

from __future__ import annotations

import re

# RFC 1123 label: object names (Services, Revisions, …); RFC 1035 label: traffic tags (a tag
# becomes the first label of a host name, so it must start with a letter).
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL = 63


def is_dns1123_label(value: str) -> bool:
    return len(value) <= MAX_LABEL and bool(DNS1123_LABEL.match(value))


def is_dns1035_label(value: str) -> bool:
    return len(value) <= MAX_LABEL and bool(DNS1035_LABEL.match(value))


def revision_name(configuration: str, generation: int) -> str:
    """Knative's generated revision name: `{configuration}-{generation:05d}`."""
    return f"{configuration}-{generation:05d}"


# Knative's cluster-local domain suffix: a Route is also reachable as {route}.{namespace}.svc.cluster.local.
CLUSTER_LOCAL_DOMAIN = "svc.cluster.local"


def hostname(name: str, namespace: str, domain: str, tag: str | None = None) -> str:
    """Every host Knative and KServe give a Route, Service or InferenceService, spelt once:
    `{name}.{namespace}.{domain}`, a tag's `{tag}-{name}.{namespace}.{domain}`, and with
    `CLUSTER_LOCAL_DOMAIN` for a domain the cluster-local `{name}.{namespace}.svc.cluster.local`."""
    label = f"{tag}-{name}" if tag else name
    return f"{label}.{namespace}.{domain}"
