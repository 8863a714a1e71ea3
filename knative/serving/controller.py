"""The Serving controller of the local plane: Service → Configuration + Route → Revisions.

It works as Knative's reconcilers do, level-based: any event about a Service or something it owns
(from the store's watch, or a replica's status from the supervisor) marks the Service dirty, and
reconciling it compares what should exist with what does:

- the Configuration and Route named after the Service, owned by it (knative/serving/resources.py);
- a Revision for the Configuration's current template, named `{service}-{generation:05d}` or as
  `spec.template.metadata.name` says (a name reused for a different template is an error on the
  Service, as Knative's webhook refuses it), immutable once created;
- replicas for every Revision the Route sends traffic to or tags, and for the newest one until it
  is ready, as the multiscaler decides (initial-scale first, then the KPA); none for the rest;
- the gateway's route, with `latestRevision: true` resolved to the latest *ready* revision
  (knative/serving/route.py) and programmed through the activator's `DataPlane` port, once
  every target it names exists and is ready (else the Route says which one is missing, as
  Knative's AllTrafficAssigned does, and the gateway keeps what it had);
- status with Knative's conditions and fields on Revisions, the Configuration, the Route and the
  Service (knative/serving/status.py). Writing an unchanged status is a no-op in the store, so
  reconciling converges.

A deleted Revision (on its own, or with its Service or InferenceService) is forgotten by the
multiscaler and its replicas are stopped when the store says it is gone; a reconcile that read it
before checks again before it scales it, so nothing starts it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from knserve.knative.activator.port import DataPlane
from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.naming import revision_name
from knserve.knative.apiserver.outlier_annotations import OutlierDetection
from knserve.knative.apiserver.reconciler import WorkQueue, mark_failed, watching
from knserve.knative.apiserver.store import Event, Store
from knserve.knative.autoscaler.multiscaler import Multiscaler
from knserve.knative.serving.resources import (
    CONFIGURATION_LABEL,
    DEFAULT_TIMEOUT,
    GENERATION_LABEL,
    SERVICE_LABEL,
    configuration_labels,
    generation_of,
    make_configuration,
    make_revision,
    make_route,
    name_taken,
    same_template,
)
from knserve.knative.serving.route import resolve_traffic, route_status
from knserve.knative.serving.status import (
    ContainerFailure,
    TrafficError,
    configuration_status,
    is_true,
    missing_revision,
    revision_conditions,
    service_status,
    unready_revision,
)
from knserve.knative.supervisor.replicas import RevisionProcessSpec, Supervisor

log = logging.getLogger(__name__)

SERVICE, CONFIGURATION, REVISION, ROUTE = (
    named(k) for k in ("services", "configurations", "revisions", "routes")
)


def _conditions(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return ((obj or {}).get("status") or {}).get("conditions") or []


def _wanted_revisions(
    config: dict[str, Any], route: dict[str, Any], revisions: list[dict[str, Any]]
) -> set[str]:
    """The revisions that get replicas: those the Route names, the newest (until it is ready and
    beyond), and the latest ready one while the Route follows the latest."""
    traffic = route["spec"]["traffic"]
    wanted = {e["revisionName"] for e in traffic if e.get("revisionName")}
    newest = max(revisions, key=generation_of, default=None)
    if newest is not None:
        wanted.add(newest["metadata"]["name"])
    latest_ready = (config.get("status") or {}).get("latestReadyRevisionName")
    if latest_ready and any(e.get("latestRevision") for e in traffic):
        wanted.add(latest_ready)
    return wanted


def _process_spec(rev: dict[str, Any], service: str) -> RevisionProcessSpec:
    """What the supervisor runs for a Revision of `service`."""
    return RevisionProcessSpec(
        rev["metadata"]["namespace"],
        service,
        service,
        rev["metadata"]["name"],
        rev["spec"]["containers"][0],
        int(rev["spec"].get("containerConcurrency") or 0),
        int(rev["spec"].get("timeoutSeconds") or DEFAULT_TIMEOUT),
        rev["metadata"].get("annotations") or {},
    )


def _outlier_detection(rev: dict[str, Any]) -> OutlierDetection:
    """The Revision's outlier detection annotations (admission refuses bad ones; a Revision stored
    before that check gets the defaults, with a warning)."""
    try:
        return OutlierDetection.from_annotations(rev["metadata"].get("annotations") or {})
    except ValueError as exc:
        log.warning("revision %s: %s; using the defaults", rev["metadata"]["name"], exc)
        return OutlierDetection()


class Controller:
    """Reconciles Services on the local plane (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        supervisor: Supervisor,
        gateway: DataPlane,
        scaler: Multiscaler,
        domain: str = "localhost",
        replica_hooks: Sequence[Callable[[RevisionProcessSpec], RevisionProcessSpec]] = (),
    ) -> None:
        self.store = store
        # the plane's pod webhooks: what a revision's replicas get beyond its spec (KServe's
        # agent injector hands a multi-model server its model config)
        self.replica_hooks = tuple(replica_hooks)
        self.supervisor = supervisor
        self.gateway = gateway
        self.scaler = scaler
        scaler.subscribe(self._replica_changed)
        self.domain = domain
        self._queue: WorkQueue[tuple[str, str]] = WorkQueue()
        supervisor.subscribe(self._replica_changed)

    # ---- the loop ----------------------------------------------------------------------------

    def mark(self, namespace: str, service: str) -> None:
        self._queue.mark((namespace, service))

    def _replica_changed(self, namespace: str, revision: str) -> None:
        # Marked on the loop's next turn: a scale from zero tells this before its replica's task
        # runs, whose fork must not wait behind the status this reconcile writes.
        asyncio.get_running_loop().call_soon(self._mark_revision, namespace, revision)

    def _mark_revision(self, namespace: str, revision: str) -> None:
        rev = self.store.find(REVISION, namespace, revision)
        if rev is not None:
            service = rev["metadata"].get("labels", {}).get(SERVICE_LABEL)
            if service:
                self.mark(namespace, service)

    async def run(self) -> None:
        async with watching(self.store, self._handle, "controller-watch"):
            for svc in self.store.list(SERVICE):
                self.mark(svc["metadata"]["namespace"], svc["metadata"]["name"])
            await self._queue.run(lambda key: self.reconcile(*key), "service", self._failed)

    def _failed(self, key: tuple[str, str], message: str) -> None:
        mark_failed(self.store, SERVICE, *key, message)

    async def _handle(self, event: Event) -> None:
        meta = event.object["metadata"]
        namespace = meta["namespace"]
        if event.kind is SERVICE:
            self.mark(namespace, meta["name"])
        elif event.kind in (CONFIGURATION, ROUTE, REVISION):
            service = (meta.get("labels") or {}).get(SERVICE_LABEL)
            if event.type == "DELETED" and event.kind is REVISION:
                self.scaler.forget(namespace, meta["name"])  # first: no tick may scale it again
                self.gateway.remove_revision(namespace, meta["name"])
                await self.supervisor.remove(namespace, meta["name"])
            if event.type == "DELETED" and event.kind is ROUTE:
                self.gateway.remove_route(namespace, meta["name"])
            if service:
                self.mark(namespace, service)

    # ---- one service -------------------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str) -> None:
        svc = self.store.find(SERVICE, namespace, name)
        if svc is None:
            return  # deleted: the store cascaded to what it owned; the watch stops processes
        config = self._ensure_configuration(svc)
        revisions, template_error = self._ensure_revision(svc, config)
        route = self._ensure_route(svc)
        ready_names = await self._run_revisions(svc, config, route, revisions)
        by_generation = sorted(revisions, key=generation_of, reverse=True)
        latest_created = by_generation[0]["metadata"]["name"] if by_generation else None
        latest_ready = next(
            (r["metadata"]["name"] for r in by_generation if r["metadata"]["name"] in ready_names),
            None,
        )
        config = self._configuration_status(config, latest_created, latest_ready, ready_names)
        route = self._route_status(route, config, ready_names)
        self.store.write_status(SERVICE, svc, service_status(svc, config, route, template_error))

    def _ensure_configuration(self, svc: dict[str, Any]) -> dict[str, Any]:
        desired = make_configuration(svc)
        labels = configuration_labels(svc)
        meta = svc["metadata"]
        current = self.store.find(CONFIGURATION, meta["namespace"], meta["name"])
        if current is None:
            return self.store.create(CONFIGURATION, desired, validate=False)
        if current["spec"] != desired["spec"] or current["metadata"].get("labels") != labels:
            current["spec"] = desired["spec"]
            current["metadata"]["labels"] = labels
            return self.store.replace(CONFIGURATION, current, validate=False)
        return current

    def _ensure_revision(
        self, svc: dict[str, Any], config: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The Configuration's revisions, with one for its current template made if missing; and
        the error when the template's revision name is taken by a different template."""
        namespace, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        template = config["spec"]["template"]
        generation = config["metadata"]["generation"]
        rev_name = (template.get("metadata") or {}).get("name") or revision_name(name, generation)
        existing = {
            r["metadata"]["name"]: r
            for r in self.store.list(REVISION, namespace, f"{CONFIGURATION_LABEL}={name}")
        }
        error = None
        found = existing.get(rev_name) or self.store.find(REVISION, namespace, rev_name)
        if found is None:
            revision = make_revision(config, name, rev_name, template, generation)
            existing[rev_name] = self.store.create(REVISION, revision, validate=False)
        elif not same_template(found["spec"], template.get("spec")) and found["metadata"][
            "labels"
        ].get(GENERATION_LABEL) != str(generation):
            error = name_taken(rev_name)
        return list(existing.values()), error

    def _ensure_route(self, svc: dict[str, Any]) -> dict[str, Any]:
        desired = make_route(svc)
        meta = svc["metadata"]
        current = self.store.find(ROUTE, meta["namespace"], meta["name"])
        if current is None:
            return self.store.create(ROUTE, desired, validate=False)
        if current["spec"] != desired["spec"]:
            current["spec"] = desired["spec"]
            return self.store.replace(ROUTE, current, validate=False)
        return current

    async def _run_revisions(
        self,
        svc: dict[str, Any],
        config: dict[str, Any],
        route: dict[str, Any],
        revisions: list[dict[str, Any]],
    ) -> set[str]:
        """Start or stop replicas; returns the names of revisions with a ready replica."""
        namespace, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        wanted = _wanted_revisions(config, route, revisions)
        ready = set()
        for rev in revisions:
            rname = rev["metadata"]["name"]
            if self.store.find(REVISION, namespace, rname) is None:
                continue  # deleted while this reconcile awaited: its DELETED event stopped it
            spec = _process_spec(rev, name)
            for hook in self.replica_hooks:
                spec = hook(spec)
            self.gateway.set_revision(
                namespace,
                rname,
                spec.container_concurrency,
                spec.timeout_seconds,
                int(rev["spec"].get("responseStartTimeoutSeconds") or 0),
                int(rev["spec"].get("idleTimeoutSeconds") or 0),
                _outlier_detection(rev),
            )
            if rname in wanted:
                await self.scaler.track(spec)
            else:
                await self.scaler.untrack(namespace, rname)
                await self.supervisor.ensure(spec, 0)
            if self._revision_status(rev, rname in wanted):
                ready.add(rname)
        return ready

    def _revision_status(self, rev: dict[str, Any], wanted: bool) -> bool:
        """Write the Revision's status from its replicas and its autoscaler; whether it is Ready."""
        namespace, rname = rev["metadata"]["namespace"], rev["metadata"]["name"]
        status = self.supervisor.status(namespace, rname)
        decision = self.scaler.decision(namespace, rname) if wanted else None
        previous = _conditions(rev)
        # Knative's PodAutoscaler keeps ScaleTargetInitialized for good; here the Revision's
        # ResourcesAvailable keeps it across untracking and restarts of the plane.
        initialized = (decision is not None and decision.initialized) or is_true(
            previous, "ResourcesAvailable"
        )
        failure = None
        if status.failure and not status.ready:  # a crashing container: no replica ready
            if status.terminated is not None:
                failure = ContainerFailure(status.terminated[1], status.terminated[0])
            else:
                failure = ContainerFailure(status.failure)
        if decision is None:  # not routed: the revision is inactive whatever its replicas do
            active, reason = "False", "NoTraffic"
        else:
            active, reason = decision.active, decision.active_reason
        fetching = self.supervisor.storage.progress(namespace, rname)
        conditions = revision_conditions(
            previous,
            initialized=initialized,
            failure=failure,
            active=active,
            active_reason=reason,
            deploying=fetching.message() if fetching else None,
            waiting=status.waiting,
        )
        new_status: dict[str, Any] = {
            "observedGeneration": rev["metadata"]["generation"],
            "conditions": conditions,
            "actualReplicas": status.ready,
            "desiredReplicas": decision.desired_pods if decision else status.desired,
        }
        if decision is not None:
            # duck Status annotations: where Knative keeps state that has no field of its own
            new_status["annotations"] = {
                "autoscaling.knative.dev/panic": str(decision.in_panic).lower()
            }
        self.store.write_status(REVISION, rev, new_status)
        return is_true(conditions, "Ready")

    def _configuration_status(
        self,
        config: dict[str, Any],
        latest_created: str | None,
        latest_ready: str | None,
        ready: set[str],
    ) -> dict[str, Any]:
        created_ready = latest_created is not None and latest_created in ready
        created_conditions: list[dict[str, Any]] = []
        if latest_created is not None and not created_ready:
            namespace = config["metadata"]["namespace"]
            created_conditions = _conditions(self.store.find(REVISION, namespace, latest_created))
        status = configuration_status(
            config, latest_created, latest_ready, created_ready, created_conditions
        )
        return self.store.write_status(CONFIGURATION, config, status)

    def _route_status(
        self, route: dict[str, Any], config: dict[str, Any], ready: set[str]
    ) -> dict[str, Any]:
        """Resolve the Route's traffic and program the data plane with it, as Knative's route
        reconciler does: only when every target exists and is ready; else AllTrafficAssigned
        says which, and the data plane keeps what it had."""
        namespace = route["metadata"]["namespace"]
        resolved = resolve_traffic(
            route,
            config,
            self.domain,
            lambda revision: self._revision_target_error(namespace, revision, ready),
        )
        if resolved.spec is not None:
            self.gateway.set_route(resolved.spec)
        return self.store.write_status(ROUTE, route, route_status(route, resolved, self.domain))

    def _revision_target_error(
        self, namespace: str, revision: str, ready: set[str]
    ) -> TrafficError | None:
        if revision in ready:
            return None
        found = self.store.find(REVISION, namespace, revision)
        if found is None:
            return missing_revision(revision)
        conditions = _conditions(found)
        if is_true(conditions, "Ready"):
            return None
        failed = any(c.get("type") == "Ready" and c.get("status") == "False" for c in conditions)
        return unready_revision(revision, failed)
