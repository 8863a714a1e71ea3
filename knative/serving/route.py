"""A Route's traffic resolved as Knative's route reconciler resolves it (pkg/reconciler/route/
traffic) (pure): `latestRevision: true` becomes the Configuration's latest *ready* revision, every
named revision must exist and be ready, and the status lists the traffic with its tag URLs. With
any target missing or unready there is nothing to program: AllTrafficAssigned says which, and the
data plane keeps what it had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from knserve.knative.activator.traffic import RouteSpec, TrafficTarget
from knserve.knative.apiserver.naming import hostname
from knserve.knative.serving.status import (
    TrafficError,
    first_traffic_error,
    route_conditions,
    unready_configuration,
)


@dataclass(frozen=True)
class ResolvedTraffic:
    """A Route's traffic as the data plane serves it (`spec`, None while `error` says why not)
    and as its status shows it (`traffic`)."""

    namespace: str
    name: str
    targets: tuple[TrafficTarget, ...] = ()
    traffic: list[dict[str, Any]] = field(default_factory=list)
    error: TrafficError | None = None

    @property
    def spec(self) -> RouteSpec | None:
        if self.error is not None:
            return None
        return RouteSpec(self.namespace, self.name, self.targets)


def resolve_traffic(
    route: dict[str, Any],
    config: dict[str, Any],
    domain: str,
    revision_error: Callable[[str], TrafficError | None],
) -> ResolvedTraffic:
    """Resolve `route`'s spec.traffic against `config`'s status; `revision_error(name)` says why a
    named revision cannot take traffic (None: it can)."""
    namespace, name = route["metadata"]["namespace"], route["metadata"]["name"]
    config_status = config.get("status") or {}
    latest_ready = config_status.get("latestReadyRevisionName")
    targets, traffic, errors = [], [], []
    for entry in route["spec"]["traffic"]:
        if entry.get("latestRevision"):
            revision = latest_ready
            if revision is None:
                failed = any(
                    c.get("type") == "Ready" and c.get("status") == "False"
                    for c in config_status.get("conditions") or []
                )
                errors.append(unready_configuration(name, failed))
                continue
        else:
            revision = entry["revisionName"]
            error = revision_error(revision)
            if error is not None:
                errors.append(error)
                continue
        tag = entry.get("tag")
        percent = int(entry.get("percent") or 0)
        targets.append(TrafficTarget(revision, percent, tag))
        item = {
            "revisionName": revision,
            "latestRevision": bool(entry.get("latestRevision")),
            "percent": percent,
        }
        if tag:
            item["tag"] = tag
            item["url"] = f"http://{hostname(name, namespace, domain, tag)}"
        traffic.append(item)
    return ResolvedTraffic(namespace, name, tuple(targets), traffic, first_traffic_error(errors))


def route_status(route: dict[str, Any], resolved: ResolvedTraffic, domain: str) -> dict[str, Any]:
    """The Route's status: its URL, its traffic (the previous one while unresolved), conditions."""
    previous = route.get("status") or {}
    url = f"http://{hostname(resolved.name, resolved.namespace, domain)}"
    status: dict[str, Any] = {
        "observedGeneration": route["metadata"]["generation"],
        "url": url,
        "address": {"url": url},
    }
    if resolved.error is None:
        status["traffic"] = resolved.traffic
    elif "traffic" in previous:  # the data plane still routes as it did
        status["traffic"] = previous["traffic"]
    status["conditions"] = route_conditions(previous.get("conditions"), resolved.error)
    return status
