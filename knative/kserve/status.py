"""An InferenceService's status, derived from the status of its components' Knative Services.

KServe reports, per component, the Knative Service's URL and revisions plus two fields of its own:
`latestRolledoutRevision`, the last revision that held 100 % of the traffic, and
`previousRolledoutRevision`, the one before it. A canary rollout sends traffic back to the
former (`prev`), so these fields are the memory that makes promote and rollback work; they are
carried forward from the previous status on every reconcile.

Conditions, with KServe's names (`PropagateStatus`, `PropagateCrossComponentStatus`):

- `PredictorReady`, `TransformerReady`, `ExplainerReady` copy each component's Ready;
  `PredictorRouteReady`, `TransformerRouteReady`, `ExplainerRoutesReady` (sic) its Knative
  Service's `RoutesReady`; `PredictorConfigurationReady`, `TransformerConfigurationReady`,
  `ExplainerConfigurationReady` its `ConfigurationsReady`;
- `RoutesReady` and `LatestDeploymentReady` aggregate the route and configuration conditions of
  every component: True when all are, else False (Unknown while one is unknown), with the reason
  `{condition} not ready`;
- `IngressReady` is True once every component is ready (KServe creates its top-level ingress only
  then); `Ready` is `PredictorReady` and `IngressReady`, as in KServe.

`url` is the InferenceService's own host; `address.url` its cluster-local address
`http://{isvc}.{namespace}.svc.cluster.local` (the local plane's gateway answers it too).
`modelStatus` is `knative.kserve.model_status`'s. While the storage initializer fetches the
model, an Unknown `PredictorReady` carries its progress from the predictor's revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knserve.knative.apiserver.naming import CLUSTER_LOCAL_DOMAIN, hostname
from knserve.knative.kserve.inferenceservice import Target, component_service_name, components_of
from knserve.knative.kserve.model_status import model_status

# Per component: its Ready, route and configuration conditions, as KServe names them.
_CONDITIONS_OF = {
    "predictor": ("PredictorReady", "PredictorRouteReady", "PredictorConfigurationReady"),
    "transformer": ("TransformerReady", "TransformerRouteReady", "TransformerConfigurationReady"),
    "explainer": ("ExplainerReady", "ExplainerRoutesReady", "ExplainerConfigurationReady"),
}
# The aggregate conditions, each over one of the per-component ones (its index above).
_AGGREGATES = (("RoutesReady", 1), ("LatestDeploymentReady", 2))
Condition = tuple[str, str | None, str | None]


def revision_percents(traffic: list[Mapping[str, Any]]) -> dict[str, int]:
    """Total percent per revision name across a status traffic block."""
    totals: dict[str, int] = {}
    for entry in traffic:
        name = entry.get("revisionName")
        if name:
            totals[name] = totals.get(name, 0) + int(entry.get("percent") or 0)
    return totals


def component_status(ksvc: Mapping[str, Any] | None, previous: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of `status.components` from its Knative Service (None when not created yet)."""
    out: dict[str, Any] = {
        k: previous[k]
        for k in ("latestRolledoutRevision", "previousRolledoutRevision")
        if previous.get(k)
    }
    if ksvc is None:
        return out
    status = ksvc.get("status") or {}
    if status.get("url"):
        out["url"] = status["url"]
        out["address"] = {"url": (status.get("address") or {}).get("url", status["url"])}
    for ours, theirs in (
        ("latestCreatedRevision", "latestCreatedRevisionName"),
        ("latestReadyRevision", "latestReadyRevisionName"),
    ):
        if status.get(theirs):
            out[ours] = status[theirs]
    traffic = list(status.get("traffic") or [])
    if traffic:
        out["traffic"] = traffic
    _roll(out, traffic)
    return out


def _roll(out: dict[str, Any], traffic: list[Mapping[str, Any]]) -> None:
    """KServe's rule (`PropagateStatus`) for the rolled-out revisions, in place.

    The latest ready revision is rolled out once its `latestRevision` entry holds 100 %; the one
    rolled out before becomes the previous. When the rolled-out revision is itself the latest
    and its `latestRevision` entry drops below 100 % while it still holds 100 % in all (the `prev`
    entry points at it: `canaryTrafficPercent` set after a promote), the previous revision is the
    rolled-out one again, so the next translation sends `prev` there: that is the rollback.
    """
    ready = out.get("latestReadyRevision")
    rolled = out.get("latestRolledoutRevision")
    for entry in traffic:
        if not ready or entry.get("revisionName") != ready or not entry.get("latestRevision"):
            continue
        percent = int(entry.get("percent") or 0)
        if rolled != ready:
            if percent == 100:
                out.pop("previousRolledoutRevision", None)
                if rolled:
                    out["previousRolledoutRevision"] = rolled
                out["latestRolledoutRevision"] = rolled = ready
        elif (
            ready == out.get("latestCreatedRevision")
            and percent < 100
            and revision_percents(traffic).get(ready) == 100
            and out.get("previousRolledoutRevision")
        ):
            out["latestRolledoutRevision"] = rolled = out["previousRolledoutRevision"]


def ready_condition(ksvc: Mapping[str, Any] | None) -> Condition:
    """(status, reason, message) of a Knative Service's Ready condition."""
    if ksvc is None:
        return "Unknown", "NotCreated", "the Knative Service has not been created yet"
    found = _ksvc_condition(ksvc, "Ready")
    return found or ("Unknown", "NotReconciled", "the Knative Service has no status yet")


def isvc_status(
    isvc: Mapping[str, Any],
    ksvcs: Mapping[str, Mapping[str, Any] | None],
    now: str,
    target: Target,
    predictor_revision: Mapping[str, Any] | None = None,
    spec_failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The full status of an InferenceService from its components' Knative Services.

    `ksvcs` maps component name to its Knative Service (None when missing). `now` is the RFC 3339
    time stamped on conditions whose status changed. `predictor_revision` (the predictor's latest
    created Revision) and `spec_failure` (KServe's failure reason and message when the spec
    cannot be served) feed `modelStatus`.
    """
    meta = isvc["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    previous = isvc.get("status") or {}
    previous_components = previous.get("components") or {}
    components = components_of(isvc)
    status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1)}
    status["components"] = {
        c: component_status(ksvcs.get(c), previous_components.get(c) or {}) for c in components
    }
    conditions: dict[str, Condition] = {}
    for component in components:
        ksvc = ksvcs.get(component)
        ready, route, configuration = _CONDITIONS_OF[component]
        conditions[ready] = ready_condition(ksvc)
        if component == "predictor":
            conditions[ready] = _with_progress(conditions[ready], predictor_revision)
        for ours, theirs in ((route, "RoutesReady"), (configuration, "ConfigurationsReady")):
            found = _ksvc_condition(ksvc, theirs) if ksvc is not None else None
            if found is not None:  # KServe sets nothing for a condition the ksvc lacks
                conditions[ours] = found
    for aggregate, index in _AGGREGATES:
        conditions[aggregate] = _aggregate(
            [_CONDITIONS_OF[c][index] for c in components], conditions
        )
    not_ready = [c for c in components if conditions[_CONDITIONS_OF[c][0]][0] != "True"]
    if not_ready:
        first = not_ready[0]
        state = "False" if conditions[_CONDITIONS_OF[first][0]][0] == "False" else "Unknown"
        conditions["IngressReady"] = (
            state,
            f"{first.capitalize()}IngressNotCreated",
            f"{first.capitalize()} ingress not created: "
            f"{component_service_name(name, first)} is not ready",
        )
    else:
        conditions["IngressReady"] = ("True", None, None)
    predictor = conditions["PredictorReady"]
    ingress = conditions["IngressReady"]
    if predictor[0] == "True" and ingress[0] == "True":
        conditions["Ready"] = ("True", None, None)
    else:
        failing = predictor if predictor[0] != "True" else ingress
        conditions["Ready"] = (failing[0], failing[1], failing[2])
    status["conditions"] = _conditions(conditions, previous.get("conditions") or [], now)
    if conditions["IngressReady"][0] == "True":
        host = _external_host(name, namespace, components, ksvcs, target)
        status["url"] = f"http://{host}"
        status["address"] = {"url": f"http://{hostname(name, namespace, CLUSTER_LOCAL_DOMAIN)}"}
    status["modelStatus"] = model_status(
        previous.get("modelStatus") or {},
        ready=conditions["Ready"][0] == "True",
        component=status["components"]["predictor"],
        ksvc=ksvcs.get("predictor"),
        revision=predictor_revision,
        spec_failure=spec_failure,
    )
    return status


def _with_progress(cond: Condition, revision: Mapping[str, Any] | None) -> Condition:
    """An Unknown `PredictorReady` with no message takes the deploying revision's (the storage
    initializer's progress), which Knative's Configuration does not carry up; KServe shows the
    same stage as modelStatus `Loading`."""
    if cond[0] != "Unknown" or cond[2] or revision is None:
        return cond
    for found in (revision.get("status") or {}).get("conditions") or []:
        if found.get("type") == "Ready" and found.get("status") == "Unknown":
            return cond if not found.get("message") else (cond[0], cond[1], found["message"])
    return cond


def _ksvc_condition(ksvc: Mapping[str, Any], ctype: str) -> Condition | None:
    for cond in (ksvc.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond.get("status", "Unknown"), cond.get("reason"), cond.get("message")
    return None


def _aggregate(types: list[str], conditions: Mapping[str, Condition]) -> Condition:
    """KServe's cross-component condition: True when every one of `types` is; otherwise the last
    one that is not decides, False or (unknown or missing) Unknown, `{type} not ready`."""
    out: Condition = ("True", None, None)
    for ctype in types:
        state = conditions.get(ctype, ("Unknown", None, None))[0]
        if state != "True":
            out = ("False" if state == "False" else "Unknown", f"{ctype} not ready", None)
    return out


def _external_host(
    name: str,
    namespace: str,
    components: list[str],
    ksvcs: Mapping[str, Mapping[str, Any] | None],
    target: Target,
) -> str:
    """The InferenceService's own host. On a cluster only Knative knows the domain (its
    config-domain), so it is read off the front component's Knative Service URL, as KServe
    does: `{isvc}-predictor.{namespace}.{domain}` gives `{isvc}.{namespace}.{domain}`."""
    if target.cluster:
        front = "transformer" if "transformer" in components else "predictor"
        url = str(((ksvcs.get(front) or {}).get("status") or {}).get("url") or "")
        host = url.split("://", 1)[-1].split("/", 1)[0]
        prefix = component_service_name(name, front) + "."
        if host.startswith(prefix):
            return name + "." + host[len(prefix) :]
    return target.service_host(name, namespace)


def _conditions(
    wanted: Mapping[str, tuple[str, str | None, str | None]],
    previous: list[Mapping[str, Any]],
    now: str,
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous}
    out = []
    for ctype in sorted(wanted):
        state, reason, message = wanted[ctype]
        cond: dict[str, Any] = {"type": ctype, "status": state}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        old: Mapping[str, Any] = before.get(ctype) or {}
        same = old.get("status") == state
        cond["lastTransitionTime"] = old.get("lastTransitionTime", now) if same else now
        out.append(cond)
    return out
