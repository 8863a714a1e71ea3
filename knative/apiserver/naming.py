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


def service_host(name: str, namespace: str, domain: str) -> str:
    return f"{name}.{namespace}.{domain}"


def tag_host(tag: str, name: str, namespace: str, domain: str) -> str:
    return f"{tag}-{name}.{namespace}.{domain}"
