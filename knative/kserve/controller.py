"""The InferenceService controller of the local plane: InferenceService → Knative Services.

It has the Serving controller's shape (`knative.serving.controller`): the store's watch marks an
InferenceService dirty, a queue hands dirty keys to `reconcile` one at a time, and reconciling is
level-based, comparing what should exist with what does:

- one Knative Service per component, `{isvc}-predictor|transformer|explainer`, translated by
  `knative.kserve.inferenceservice` (the same code the kopf operator and `knserve export` use), owned by
  the InferenceService (`controller: true`), so deleting it deletes them; a component removed
  from the spec loses its Service;
- the predictor's runtime chosen among the namespace's ServingRuntimes, the ClusterServingRuntimes
  and the built-in ones (`knative.kserve.runtimes`), so a change to a ServingRuntime
  re-reconciles the InferenceServices of its namespace, and one to a ClusterServingRuntime all;
- canary traffic from the component's `latestRolledoutRevision`, which the status computation
  (`knative.kserve.status`) derives from the Knative Service's *observed* traffic: a revision is
  rolled out once it is the latest ready one and holds 100 %. That is KServe's memory of where
  `prev` points, so promotion (dropping `canaryTrafficPercent`) and rollback (setting it to 0)
  need nothing else;
- the InferenceService's status, written only when it changed, so reconciling converges.

A Knative Service whose status has not caught up with its spec (`observedGeneration` behind
`generation`) counts as not ready yet: right after a spec change its Ready, RoutesReady and
ConfigurationsReady conditions still describe the previous revision, and a client waiting for
the InferenceService would otherwise see the old revision's readiness as the new one's.

While the predictor is not ready on its latest revision, that Revision is read too: a replica
that exited (a model that failed to load) is on it, and becomes the InferenceService's
`modelStatus.lastFailureInfo`.

An InferenceService that cannot be translated (an unknown model format, a bad field) is not an
error of the controller: it becomes `Ready=False` with reason `InvalidSpec` and the message (and
`modelStatus.transitionStatus: InvalidSpec` with KServe's failure reason), and its existing
Services are left serving, as KServe leaves them.

`isvc_routes` tells the gateway where the InferenceService's own host goes: to the transformer
if there is one, else to the predictor, and `…:explain` paths to the explainer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.naming import CLUSTER_LOCAL_DOMAIN, hostname
from knserve.knative.apiserver.reconciler import WorkQueue, watching
from knserve.knative.apiserver.store import Event, Store, now
from knserve.knative.kserve.engines_available import local_engine_problem
from knserve.knative.kserve.inferenceservice import (
    COMPONENT_LABEL,
    COMPONENTS,
    ISVC_LABEL,
    InvalidInferenceService,
    Target,
    component_service_name,
    components_of,
    knative_services,
)
from knserve.knative.kserve.runtime_install import install_builtin_runtimes
from knserve.knative.kserve.runtimes import RuntimeNotFound, merge_runtimes
from knserve.knative.kserve.status import isvc_status

__all__ = [
    "EXPLAIN_SUFFIX",
    "InferenceServiceController",
    "IsvcRoute",
    "isvc_routes",
    "resolve_isvc_route",
]

log = logging.getLogger(__name__)


ISVC, SERVICE, SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME, REVISION = (
    named(k)
    for k in (
        "inferenceservices",
        "services",
        "servingruntimes",
        "clusterservingruntimes",
        "revisions",
    )
)
# KServe's V1 explain verb (`POST /v1/models/{name}:explain`), which its ingress sends to the explainer.
EXPLAIN_SUFFIX = ":explain"


# ---- the InferenceService's own host ---------------------------------------------------------


@dataclass(frozen=True)
class IsvcRoute:
    """Requests for `host` whose path ends with `path_suffix` ("" for any path) go to a Knative
    Service: `service` in `namespace`, reachable at `service_host`."""

    host: str
    path_suffix: str
    namespace: str
    service: str
    service_host: str

    def matches(self, host: str, path: str) -> bool:
        """Whether a request (host already normalized, path with or without a query) is ours."""
        return host == self.host and path.partition("?")[0].endswith(self.path_suffix)


# Told (namespace, name, routes) when an InferenceService's own routes change; () once it is gone.
RoutesChanged = Callable[[str, str, tuple[IsvcRoute, ...]], None]


def isvc_routes(
    isvc: Mapping[str, Any], domain: str = "localhost", components: Iterable[str] | None = None
) -> tuple[IsvcRoute, ...]:
    """Where `{isvc}.{namespace}.{domain}` (and `….svc.cluster.local`) sends requests, most
    specific first.

    `components` are the components whose Knative Services exist (default: those the spec
    declares). Explain requests go to the explainer; everything else to the transformer if there
    is one, else to the predictor, as KServe's top-level ingress does. No predictor, no routes.
    """
    meta = isvc["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    present = set(components_of(isvc) if components is None else components)
    if "predictor" not in present:
        return ()
    target = Target(domain=domain)
    front = "transformer" if "transformer" in present else "predictor"
    wanted = [("explainer", EXPLAIN_SUFFIX)] if "explainer" in present else []
    wanted.append((front, ""))
    # its own host, then its cluster-local one (the status's address.url), as KServe's
    # VirtualService lists both
    hosts = (target.service_host(name, namespace), hostname(name, namespace, CLUSTER_LOCAL_DOMAIN))
    routes = []
    for host in hosts:
        for component, suffix in wanted:
            service = component_service_name(name, component)
            service_host = target.service_host(service, namespace)
            routes.append(IsvcRoute(host, suffix, namespace, service, service_host))
    return tuple(routes)


def resolve_isvc_route(routes: Iterable[IsvcRoute], host: str, path: str) -> IsvcRoute | None:
    """The first route (of `isvc_routes` order) a request matches, or None."""
    return next((route for route in routes if route.matches(host, path)), None)


# ---- the controller --------------------------------------------------------------------------


def controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether `owner` is `obj`'s controller (an ownerReference with controller: true and its uid)."""
    uid = owner["metadata"].get("uid")
    return any(
        ref.get("controller") and ref.get("kind") == owner["kind"] and ref.get("uid") == uid
        for ref in obj["metadata"].get("ownerReferences") or []
    )


class ReconcileError(NamedTuple):
    """Why an InferenceService is not Ready (`reason`, `message`); `model_failure` is KServe's
    FailureReason for `modelStatus` when the predictor's spec is at fault."""

    reason: str
    message: str
    model_failure: str | None = None


_SERVICE_CONDITIONS = ("Ready", "ConfigurationsReady", "RoutesReady")


def observed_status(ksvc: dict[str, Any]) -> dict[str, Any]:
    """The Knative Service as readiness should see it: its conditions are Unknown until its
    status has observed its current generation (see the module docstring)."""
    status = ksvc.get("status") or {}
    if status.get("observedGeneration") == ksvc["metadata"].get("generation"):
        return ksvc
    pending = [
        {
            "type": ctype,
            "status": "Unknown",
            "reason": "Reconciling",
            "message": "the Knative Service has not observed its latest spec yet",
        }
        for ctype in _SERVICE_CONDITIONS
    ]
    others = [c for c in status.get("conditions") or [] if c.get("type") not in _SERVICE_CONDITIONS]
    return {**ksvc, "status": {**status, "conditions": [*pending, *others]}}


def revision_to_inspect(owned: Mapping[str, dict[str, Any]]) -> str | None:
    """The predictor's latest created revision while the predictor is not ready on it: where a
    replica that failed (a model that did not load) leaves its exit code and last words."""
    ksvc = owned.get("predictor")
    status = (ksvc or {}).get("status") or {}
    created = status.get("latestCreatedRevisionName")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if created and (not ready or created != status.get("latestReadyRevisionName")):
        return str(created)
    return None


def owned_services(
    isvc: Mapping[str, Any], services: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """This InferenceService's Knative Services by component, among `services` (those listed by
    its label): only the ones it controls, so a same-named Service of someone else is not taken."""
    return {
        ksvc["metadata"]["labels"][COMPONENT_LABEL]: ksvc
        for ksvc in services
        if controlled_by(ksvc, isvc)
        and (ksvc["metadata"].get("labels") or {}).get(COMPONENT_LABEL) in COMPONENTS
    }


def desired_services(
    isvc: Mapping[str, Any],
    owned: Mapping[str, dict[str, Any]],
    runtimes: Sequence[Mapping[str, Any]],
    target: Target,
    source: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], ReconcileError | None]:
    """The Knative Services `isvc` asks for, or an `InvalidSpec` error.

    The revisions its `owned` Services have rolled out (from their current traffic) feed the
    translation, so a canary keeps sending the rest to `prev`. `source` is what to translate when
    it differs from `isvc` (the operator strips kopf's bookkeeping annotations).
    """
    before = isvc_status(isvc, _observed(owned), now(), target)
    rolled_out = {
        component: entry.get("latestRolledoutRevision")
        for component, entry in before["components"].items()
    }
    try:
        return knative_services(source or isvc, runtimes, target, rolled_out), None
    except (InvalidInferenceService, RuntimeNotFound) as exc:
        return [], ReconcileError("InvalidSpec", str(exc), exc.reason)


def engine_unavailable(desired: Sequence[Mapping[str, Any]]) -> ReconcileError | None:
    """`EngineUnavailable` when the predictor's engine cannot run on the local plane
    (`knative.kserve.engines_available`): Ready False with what to use instead, and KServe's
    `RuntimeUnhealthy` in the model status. Only the local controller asks; a cluster runs it."""
    for ksvc in desired:
        if ksvc["metadata"]["labels"].get(COMPONENT_LABEL) != "predictor":
            continue
        for container in ksvc["spec"]["template"]["spec"]["containers"]:
            problem = local_engine_problem(container)
            if problem:
                return ReconcileError("EngineUnavailable", problem, "RuntimeUnhealthy")
    return None


def settled_status(
    isvc: Mapping[str, Any],
    owned: Mapping[str, dict[str, Any]],
    target: Target,
    error: ReconcileError | None,
    predictor_revision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The InferenceService's status from its Services after the writes (and the predictor's
    latest Revision, see `revision_to_inspect`), Ready False on `error`."""
    spec_failure = None
    if error is not None and error.model_failure is not None:
        spec_failure = (error.model_failure, error.message)
    status = isvc_status(isvc, _observed(owned), now(), target, predictor_revision, spec_failure)
    if error is not None:
        fail_ready(status, isvc.get("status") or {}, error.reason, error.message)
    return status


def service_conflict(service: str, isvc: str) -> ReconcileError:
    """The error of a Knative Service that has the component's name but another controller."""
    return ReconcileError(
        "ServiceConflict",
        f"Knative Service {service!r} already exists and is "
        f"not owned by InferenceService {isvc!r}; delete it or rename the "
        "InferenceService",
    )


class ServiceWrite(NamedTuple):
    """One Knative Service to create (`current` None) or bring to `desired`."""

    component: str
    desired: dict[str, Any]
    current: dict[str, Any] | None


class ServicePlan(NamedTuple):
    """Apply the desired, delete the undeclared: what an InferenceService's Knative Services need,
    decided once from plain data for the local controller and the kopf operator alike."""

    writes: list[ServiceWrite]
    deletes: list[str]  # names of owned Services whose component is no longer declared
    error: ReconcileError | None  # a wanted name that another owner holds (that one is left)


def plan_services(
    isvc: Mapping[str, Any],
    owned: Mapping[str, dict[str, Any]],
    desired: Sequence[dict[str, Any]],
    find: Callable[[str], dict[str, Any] | None],
) -> ServicePlan:
    """The writes and deletions that bring `owned` (by component) to `desired`. `find(name)` reads
    a Service of the namespace by name, for a component that `owned` does not hold yet: one this
    InferenceService controls is updated, one controlled by anyone else is a ServiceConflict."""
    writes: list[ServiceWrite] = []
    error: ReconcileError | None = None
    for ksvc in desired:
        component = ksvc["metadata"]["labels"][COMPONENT_LABEL]
        current = owned.get(component)
        if current is None:
            current = find(ksvc["metadata"]["name"])
            if current is not None and not controlled_by(current, isvc):
                error = error or service_conflict(
                    ksvc["metadata"]["name"], isvc["metadata"]["name"]
                )
                continue
        writes.append(ServiceWrite(component, ksvc, current))
    declared = {ksvc["metadata"]["labels"][COMPONENT_LABEL] for ksvc in desired}
    deletes = [ksvc["metadata"]["name"] for c, ksvc in owned.items() if c not in declared]
    return ServicePlan(writes, deletes, error)


def _observed(owned: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component: observed_status(ksvc) for component, ksvc in owned.items()}


class InferenceServiceController:
    """Reconciles InferenceServices into Knative Services on the local plane (see the module
    docstring). `routes_changed(namespace, name, routes)` is told whenever an InferenceService's
    own routes change, with `()` once it is gone."""

    def __init__(
        self, store: Store, domain: str = "localhost", routes_changed: RoutesChanged | None = None
    ) -> None:
        self.store = store
        self.domain = domain
        self.target = Target(domain=domain)
        self.routes_changed = routes_changed
        self._routes: dict[tuple[str, str], tuple[IsvcRoute, ...]] = {}
        self._queue: WorkQueue[tuple[str, str]] = WorkQueue()

    # ---- the loop ----------------------------------------------------------------------------

    def mark(self, namespace: str, name: str) -> None:
        self._queue.mark((namespace, name))

    async def run(self) -> None:
        install_builtin_runtimes(self.store)
        async with watching(self.store, self._handle, "isvc-controller-watch"):
            for isvc in self.store.list(ISVC):
                self.mark(isvc["metadata"]["namespace"], isvc["metadata"]["name"])
            await self._queue.run(lambda key: self.reconcile(*key), "inferenceservice")

    async def _handle(self, event: Event) -> None:
        meta = event.object["metadata"]
        namespace = meta.get("namespace", "")
        if event.kind is CLUSTER_SERVING_RUNTIME:
            for isvc in self.store.list(ISVC):
                self.mark(isvc["metadata"]["namespace"], isvc["metadata"]["name"])
        elif event.kind is ISVC:
            self.mark(namespace, meta["name"])
        elif event.kind is SERVICE or event.kind is REVISION:  # a revision: model progress
            owner = (meta.get("labels") or {}).get(ISVC_LABEL)
            if owner:
                self.mark(namespace, owner)
        elif event.kind is SERVING_RUNTIME:
            for isvc in self.store.list(ISVC, namespace):
                self.mark(namespace, isvc["metadata"]["name"])

    # ---- one InferenceService ----------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str) -> None:
        isvc = self.store.find(ISVC, namespace, name)
        if isvc is None:  # deleted: the store cascaded to its Knative Services
            self._publish_routes(namespace, name, ())
            return
        meta = isvc["metadata"]
        owned = owned_services(
            isvc, self.store.list(SERVICE, namespace, f"{ISVC_LABEL}={meta['name']}")
        )
        runtimes = merge_runtimes(
            [
                *self.store.list(SERVING_RUNTIME, namespace),
                *self.store.list(CLUSTER_SERVING_RUNTIME),
            ]
        )
        desired, error = desired_services(isvc, owned, runtimes, self.target)
        error = error or engine_unavailable(desired)
        if error is None:
            owned, error = self._apply(isvc, owned, desired)
        inspect = revision_to_inspect(owned)
        revision = self.store.find(REVISION, namespace, inspect) if inspect else None
        status = settled_status(isvc, owned, self.target, error, revision)
        self._publish_routes(namespace, name, isvc_routes(isvc, self.domain, owned))
        self.store.write_status(ISVC, isvc, status)

    def _apply(
        self,
        isvc: Mapping[str, Any],
        owned: dict[str, dict[str, Any]],
        desired: Sequence[dict[str, Any]],
    ) -> tuple[dict[str, dict[str, Any]], ReconcileError | None]:
        """Carry out `plan_services` on the store: the owned Services by component afterwards,
        and the plan's error."""
        namespace = isvc["metadata"]["namespace"]
        plan = plan_services(
            isvc, owned, desired, lambda name: self.store.find(SERVICE, namespace, name)
        )
        result = {write.component: self._write(write) for write in plan.writes}
        for name in plan.deletes:
            self.store.delete(SERVICE, namespace, name)
        return result, plan.error

    def _write(self, write: ServiceWrite) -> dict[str, Any]:
        if write.current is None:
            return self.store.create(SERVICE, write.desired, validate=False)
        current, wanted_meta = write.current, write.desired["metadata"]
        meta = current["metadata"]
        if (
            current.get("spec") != write.desired["spec"]
            or meta.get("labels") != wanted_meta["labels"]
            or meta.get("ownerReferences") != wanted_meta["ownerReferences"]
        ):
            current["spec"] = write.desired["spec"]
            meta["labels"] = wanted_meta["labels"]
            meta["ownerReferences"] = wanted_meta["ownerReferences"]
            current = self.store.replace(SERVICE, current, validate=False)
        return current

    def _publish_routes(self, namespace: str, name: str, routes: tuple[IsvcRoute, ...]) -> None:
        key = (namespace, name)
        if self._routes.get(key, ()) == routes:
            return
        if routes:
            self._routes[key] = routes
        else:
            self._routes.pop(key, None)
        if self.routes_changed is not None:
            self.routes_changed(namespace, name, routes)


def fail_ready(
    status: dict[str, Any], previous: Mapping[str, Any], reason: str, message: str
) -> None:
    """Turn `Ready` False with the reason and message (in place), keeping its transition time
    while it stays False for the same reason."""
    old: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    same = old.get("status") == "False" and old.get("reason") == reason
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": old.get("lastTransitionTime") if same else now(),
    }
    status["conditions"] = [
        ready if c.get("type") == "Ready" else c for c in status.get("conditions") or []
    ]
