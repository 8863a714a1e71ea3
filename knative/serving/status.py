"""The conditions Knative Serving's reconcilers write on Revisions and Routes, with their reasons
and messages (pkg/apis/serving/v1/revision_lifecycle.go, route_lifecycle.go, the KPA's
kpa.go and the route's traffic/errors.go), built from what the local plane knows.

Both kinds use Knative's *living* condition sets: `Ready` is True when every dependent condition
is True, False (with that condition's reason and message) when one is False, Unknown otherwise.
A Revision's dependents are ResourcesAvailable and ContainerHealthy; `Active` is not one of them,
so a revision scaled to zero, or with no traffic, stays Ready with Active=False, NoTraffic. A
Route's dependents are AllTrafficAssigned, IngressReady and CertificateProvisioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knserve.knative.apiserver.reconciler import condition

Conditions = list[dict[str, Any]]

# The PodAutoscaler's Active condition (kpa.go) as the Revision mirrors it: reason -> message.
ACTIVE_MESSAGES = {
    "NoTraffic": "The target is not receiving traffic.",
    "TimedOut": "The target could not be activated.",
    "Queued": "Requests to the target are being buffered as resources are provisioned.",
}


def living_ready(dependents: Conditions, previous: Conditions | None) -> dict[str, Any]:
    """`Ready` of a living condition set from its dependent conditions."""
    for status in ("False", "Unknown"):
        worst = next((c for c in dependents if c["status"] == status), None)
        if worst is not None:
            return condition("Ready", status, worst.get("reason"), worst.get("message"), previous)
    return condition("Ready", "True", previous=previous)


def is_true(conditions: Conditions | None, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conditions or [])


@dataclass(frozen=True)
class ContainerFailure:
    """Why a revision's container is not healthy: `exit_code` and the termination message of a
    replica that exited, or (exit_code None) why it could not be started."""

    message: str
    exit_code: int | None = None


def revision_conditions(
    previous: Conditions | None,
    *,
    initialized: bool,
    failure: ContainerFailure | None,
    active: str,
    active_reason: str = "",
    deploying: str | None = None,
    waiting: tuple[str, str] | None = None,
) -> Conditions:
    """Ready, ContainerHealthy, ResourcesAvailable and Active of a Revision.

    `initialized`: its PodAutoscaler once reached initial-scale (ScaleTargetInitialized), which
    is what makes the resources available and the container healthy (PropagateAutoscalerStatus).
    `failure`: a replica exited with no replica ready (the revision reconciler's check of a
    crashing pod's LastTerminationState). `active`: the PA's Active status and reason.
    `deploying`: what the revision waits for while it deploys (the storage initializer's
    progress), the message of its Unknown conditions.
    `waiting`: (reason, message) of a replica that cannot start yet (a container Waiting, such
    as `BuildingEngine` while an engine's environment is built, as a pod pulls its image).
    """
    if failure is not None and failure.exit_code is not None:
        # ExitCodeReason and RevisionContainerExitingMessage, as Knative words them
        message = failure.message or "container exited with no error"
        healthy = condition(
            "ContainerHealthy",
            "False",
            f"ExitCode{failure.exit_code}",
            f"Container failed with: {message}",
            previous,
        )
    elif failure is not None:
        healthy = condition(
            "ContainerHealthy", "False", "ContainerFailed", failure.message, previous
        )
    elif initialized:
        healthy = condition("ContainerHealthy", "True", previous=previous)
    elif waiting is not None:
        healthy = condition("ContainerHealthy", "Unknown", *waiting, previous)
    else:
        healthy = condition("ContainerHealthy", "Unknown", "Deploying", deploying, previous)
    if initialized:
        available = condition("ResourcesAvailable", "True", previous=previous)
    elif active == "False" and active_reason == "TimedOut":
        available = condition(
            "ResourcesAvailable",
            "False",
            "ProgressDeadlineExceeded",
            "Initial scale was never achieved",
            previous,
        )
    elif waiting is not None:
        available = condition("ResourcesAvailable", "Unknown", *waiting, previous)
    else:
        available = condition("ResourcesAvailable", "Unknown", "Deploying", deploying, previous)
    if active == "True":
        act = condition("Active", "True", previous=previous)
    else:
        reason = active_reason or ("NoTraffic" if active == "False" else "Queued")
        act = condition("Active", active, reason, ACTIVE_MESSAGES.get(reason), previous)
    return [living_ready([available, healthy], previous), healthy, available, act]


@dataclass(frozen=True)
class TrafficError:
    """Why a Route's traffic cannot be assigned: AllTrafficAssigned's status, reason and message
    (traffic/errors.go). A failure (False) outranks a target that is only not ready yet."""

    status: str
    reason: str
    message: str


def missing_revision(name: str) -> TrafficError:
    return TrafficError(
        "False", "RevisionMissing", f'Revision "{name}" referenced in traffic not found.'
    )


def unready_revision(name: str, failed: bool) -> TrafficError:
    if failed:
        return TrafficError(
            "False", "RevisionMissing", f'Revision "{name}" failed to become ready.'
        )
    return TrafficError("Unknown", "RevisionMissing", f'Revision "{name}" is not yet ready.')


def unready_configuration(name: str, failed: bool) -> TrafficError:
    if failed:
        return TrafficError(
            "False", "RevisionMissing", f'Configuration "{name}" does not have any ready Revision.'
        )
    return TrafficError(
        "Unknown",
        "RevisionMissing",
        f'Configuration "{name}" is waiting for a Revision to become ready.',
    )


def first_traffic_error(errors: list[TrafficError]) -> TrafficError | None:
    """The error the Route reports: the first failure, else the first target not ready."""
    return next((e for e in errors if e.status == "False"), errors[0] if errors else None)


def route_conditions(previous: Conditions | None, error: TrafficError | None) -> Conditions:
    """Ready, AllTrafficAssigned, IngressReady and CertificateProvisioned of a Route.

    With a traffic error the ingress (the gateway's route) is not reprogrammed, so IngressReady
    keeps what it was; TLS is not enabled on the local plane, which Knative counts as provisioned.
    """
    if error is None:
        assigned = condition("AllTrafficAssigned", "True", previous=previous)
        ingress = condition("IngressReady", "True", previous=previous)
    else:
        assigned = condition(
            "AllTrafficAssigned", error.status, error.reason, error.message, previous
        )
        was = next((c for c in previous or [] if c.get("type") == "IngressReady"), None)
        ingress = was or condition(
            "IngressReady",
            "Unknown",
            "IngressNotConfigured",
            "Ingress has not yet been reconciled.",
            previous,
        )
    certificate = condition(
        "CertificateProvisioned",
        "True",
        "TLSNotEnabled",
        "external-domain-tls is not enabled",
        previous,
    )
    return [
        living_ready([assigned, ingress, certificate], previous),
        assigned,
        ingress,
        certificate,
    ]


def configuration_status(
    config: dict[str, Any],
    latest_created: str | None,
    latest_ready: str | None,
    created_ready: bool,
    created_conditions: Conditions,
) -> dict[str, Any]:
    """A Configuration's status: its latest created and ready revisions and its Ready condition
    (MarkLatestCreatedFailed's words when the latest created revision failed)."""
    previous = config.get("status") or {}
    status: dict[str, Any] = {"observedGeneration": config["metadata"]["generation"]}
    if latest_created:
        status["latestCreatedRevisionName"] = latest_created
    ready_name = latest_ready or previous.get("latestReadyRevisionName")
    if ready_name:
        status["latestReadyRevisionName"] = ready_name
    failure = None
    if latest_created is not None and not created_ready:
        failure = next(
            (c for c in created_conditions if c["type"] == "Ready" and c["status"] == "False"),
            None,
        )
    prev_conds = previous.get("conditions")
    if created_ready:
        cond = condition("Ready", "True", previous=prev_conds)
    elif failure:
        cond = condition(
            "Ready",
            "False",
            "RevisionFailed",
            f'Revision "{latest_created}" failed with message: {failure.get("message", "")}.',
            prev_conds,
        )
    else:
        cond = condition("Ready", "Unknown", "Deploying", previous=prev_conds)
    status["conditions"] = [cond]
    return status


def _mirrored(ctype: str, source: dict[str, Any], previous: Conditions | None) -> dict[str, Any]:
    """Condition `ctype` with the status, reason and message of `source` (a child's Ready)."""
    return condition(
        ctype,
        source.get("status", "Unknown"),
        source.get("reason"),
        source.get("message"),
        previous,
    )


def service_status(
    svc: dict[str, Any],
    config: dict[str, Any],
    route: dict[str, Any],
    template_error: str | None,
) -> dict[str, Any]:
    """A Service's status: ConfigurationsReady and RoutesReady from its Configuration and Route
    (or the template error), and their revision names, URL, address and traffic."""
    previous = (svc.get("status") or {}).get("conditions")
    config_cond = (config.get("status") or {}).get("conditions", [{}])[0]
    route_cond = (route.get("status") or {}).get("conditions", [{}])[0]
    if template_error:
        config_cond = {"status": "False", "reason": "RevisionNameTaken", "message": template_error}
    cfg = _mirrored("ConfigurationsReady", config_cond, previous)
    rte = _mirrored("RoutesReady", route_cond, previous)
    status: dict[str, Any] = {
        "observedGeneration": svc["metadata"]["generation"],
        "conditions": [living_ready([cfg, rte], previous), cfg, rte],
    }
    cstatus = config.get("status") or {}
    for key in ("latestCreatedRevisionName", "latestReadyRevisionName"):
        if cstatus.get(key):
            status[key] = cstatus[key]
    rstatus = route.get("status") or {}
    for key in ("url", "address", "traffic"):
        if key in rstatus:
            status[key] = rstatus[key]
    return status
