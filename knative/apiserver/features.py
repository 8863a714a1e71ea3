"""Knative's `config-features` ConfigMap: feature flags, each Enabled, Disabled or Allowed.

`features_from_map` reads the ConfigMap's `data` as Knative's NewFeaturesConfigFromMap does
(pkg/apis/config/features.go: values case-insensitive, `_example` ignored) into a mapping of every
flag to its canonical value, defaults filled in, so `knserve up --features-config` takes the
ConfigMap a cluster has. The plane acts on `tag-header-based-routing` (the gateway routes by the
`Knative-Serving-Tag` header only when it is Enabled, as Knative's ingress does); the other flags
gate Kubernetes pod-spec fields that a local replica does not have, and are accepted as they are.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENABLED, DISABLED, ALLOWED = "Enabled", "Disabled", "Allowed"
TAG_HEADER_BASED_ROUTING = "tag-header-based-routing"

# Knative's defaults (defaultFeaturesConfig), by ConfigMap key.
DEFAULTS: dict[str, str] = {
    "multi-container": ENABLED,
    "multi-container-probing": DISABLED,
    "autodetect-http2": DISABLED,
    "tag-header-based-routing": DISABLED,
    "queueproxy.mount-podinfo": DISABLED,
    "queueproxy.resource-defaults": DISABLED,
    "secure-pod-defaults": DISABLED,
    "kubernetes.containerspec-addcapabilities": DISABLED,
    "kubernetes.podspec-affinity": DISABLED,
    "kubernetes.podspec-dnsconfig": DISABLED,
    "kubernetes.podspec-dnspolicy": DISABLED,
    "kubernetes.podspec-fieldref": DISABLED,
    "kubernetes.podspec-hostaliases": DISABLED,
    "kubernetes.podspec-hostipc": DISABLED,
    "kubernetes.podspec-hostnetwork": DISABLED,
    "kubernetes.podspec-hostpid": DISABLED,
    "kubernetes.podspec-init-containers": DISABLED,
    "kubernetes.podspec-nodeselector": DISABLED,
    "kubernetes.podspec-persistent-volume-claim": DISABLED,
    "kubernetes.podspec-persistent-volume-write": DISABLED,
    "kubernetes.podspec-priorityclassname": DISABLED,
    "kubernetes.podspec-runtimeclassname": DISABLED,
    "kubernetes.podspec-schedulername": DISABLED,
    "kubernetes.podspec-securitycontext": DISABLED,
    "kubernetes.podspec-shareprocessnamespace": DISABLED,
    "kubernetes.podspec-tolerations": DISABLED,
    "kubernetes.podspec-topologyspreadconstraints": DISABLED,
    "kubernetes.podspec-volumes-csi": DISABLED,
    "kubernetes.podspec-volumes-emptydir": ENABLED,
    "kubernetes.podspec-volumes-ephemeral": DISABLED,
    "kubernetes.podspec-volumes-hostpath": DISABLED,
    "kubernetes.podspec-volumes-image": DISABLED,
    "kubernetes.podspec-volumes-mount-propagation": DISABLED,
}
_SECURE_POD_DEFAULTS = (DISABLED, "AllowRootBounded", ENABLED)


def features_from_map(data: Mapping[str, Any]) -> dict[str, str]:
    """Every flag's value ("Enabled", "Disabled" or "Allowed"), from config-features' `data`.

    Knative keeps the default for a value it does not know; here a value that is none of the
    flag's values, or a key Knative does not have, is refused (ValueError naming what is
    accepted), because a typo would otherwise silently leave a feature off.
    """
    features = dict(DEFAULTS)
    for key, raw in data.items():
        if key == "_example":
            continue
        if key not in DEFAULTS:
            raise ValueError(
                f"config-features: unknown key {key!r}; known keys: {', '.join(sorted(DEFAULTS))}"
            )
        values = (
            _SECURE_POD_DEFAULTS if key == "secure-pod-defaults" else (ENABLED, ALLOWED, DISABLED)
        )
        text = str(raw).strip()
        matched = [v for v in values if v.lower() == text.lower()]
        if not matched:
            raise ValueError(
                f"config-features: {key} is {text!r}; use one of {', '.join(v.lower() for v in values)}"
            )
        features[key] = matched[0]
    return features


def is_enabled(features: Mapping[str, str], key: str) -> bool:
    """Whether the flag is on for everything (Enabled; Allowed leaves it to each object)."""
    return features.get(key, DEFAULTS.get(key)) == ENABLED
