"""The InferenceGraph controller of the local plane: InferenceGraph → the router's Knative Service.

The InferenceService controller's shape (`knative.kserve.controller`): the store's watch marks a
graph dirty, a queue reconciles one key at a time, level-based. Reconciling one graph:

- read the InferenceServices its steps name and resolve the steps to URLs
  (`knative.kserve.graph.resolve_steps`); one missing or without an address leaves the graph
  `Ready=False` with the reason (KServe requeues without a status), and an existing router
  keeps serving;
- create or update the router's Knative Service (`router_service`), owned by the graph, so
  deleting the graph deletes it; a same-named Service owned by someone else is a conflict;
- with async nodes (`knative.router.chain`), create the Triggers that carry each step's output
  through the broker, and delete those no longer wanted;
- write the status (`graph_status`) when it changed.

An InferenceService event marks the graphs that name it (its address decides their URLs), a
Knative Service or Trigger event carrying the graph label marks its graph.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.reconciler import WorkQueue, watching
from knserve.knative.apiserver.store import Event, Store
from knserve.knative.kserve.controller import controlled_by
from knserve.knative.kserve.graph import (
    GRAPH_LABEL,
    GraphNotReady,
    graph_status,
    referenced_services,
    resolve_steps,
    router_service,
)
from knserve.knative.kserve.graph_chain import (
    async_broker,
    chain_env,
    chain_status_annotations,
    chain_triggers,
)

__all__ = ["InferenceGraphController", "desired_router", "trigger_plan"]

log = logging.getLogger(__name__)

GRAPH, ISVC, SERVICE, TRIGGER, BROKER = (
    named(k) for k in ("inferencegraphs", "inferenceservices", "services", "triggers", "brokers")
)


def desired_router(
    graph: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    isvcs: Mapping[str, Mapping[str, Any] | None],
    broker: Mapping[str, Any] | None,
    propagate_headers: Sequence[str] = (),
) -> tuple[dict[str, Any] | None, GraphNotReady | None]:
    """The router's Knative Service the graph wants, or why it cannot have one now: the
    decision the local controller and the kopf operator share. `current` is the namespace's
    Service of the graph's name, `isvcs` the InferenceServices its steps name (None: missing),
    `broker` an async graph's Broker."""
    name = graph["metadata"]["name"]
    if current is not None and not controlled_by(current, graph):
        return None, GraphNotReady(
            "ServiceConflict",
            f"Knative Service {name!r} already exists and is not owned by InferenceGraph "
            f"{name!r}; delete it or rename the graph",
        )
    try:
        resolved = resolve_steps(graph, isvcs)
        env = _chain_env(graph, broker)
    except GraphNotReady as exc:
        return None, exc
    return router_service(graph, resolved, list(propagate_headers), env=env), None


def _chain_env(graph: Mapping[str, Any], broker: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """An async graph's router environment: its broker must exist and have an address."""
    broker_name = async_broker(graph)
    if broker_name is None:
        return []
    url = (((broker or {}).get("status") or {}).get("address") or {}).get("url")
    if not url:
        raise GraphNotReady(
            "BrokerNotReady",
            f"Broker {broker_name!r} of annotation knserve.dev/async-broker "
            + ("has no address yet" if broker else "does not exist; create it"),
        )
    return chain_env(graph, url)


def trigger_plan(
    graph: Mapping[str, Any], existing: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The Triggers to apply and the names of the graph's Triggers to delete, from those of
    its label (`existing`)."""
    wanted = chain_triggers(graph)
    names = {t["metadata"]["name"] for t in wanted}
    stale = [
        t["metadata"]["name"]
        for t in existing
        if controlled_by(t, graph) and t["metadata"]["name"] not in names
    ]
    return wanted, stale


class InferenceGraphController:
    """Reconciles InferenceGraphs into router Services on the local plane (module docstring).
    `propagate_headers` are the patterns of headers the routers pass on to the steps."""

    def __init__(
        self, store: Store, domain: str = "localhost", propagate_headers: Sequence[str] = ()
    ) -> None:
        self.store = store
        self.domain = domain
        self.propagate_headers = list(propagate_headers)
        self._queue: WorkQueue[tuple[str, str]] = WorkQueue()

    def mark(self, namespace: str, name: str) -> None:
        self._queue.mark((namespace, name))

    async def run(self) -> None:
        async with watching(self.store, self._handle, "graph-controller-watch"):
            for graph in self.store.list(GRAPH):
                self.mark(graph["metadata"]["namespace"], graph["metadata"]["name"])
            await self._queue.run(lambda key: self.reconcile(*key), "inferencegraph")

    async def _handle(self, event: Event) -> None:
        meta = event.object["metadata"]
        namespace = meta["namespace"]
        if event.kind is GRAPH:
            self.mark(namespace, meta["name"])
        elif event.kind is BROKER:
            for graph in self.store.list(GRAPH, namespace):
                if async_broker(graph) == meta["name"]:
                    self.mark(namespace, graph["metadata"]["name"])
        elif event.kind in (SERVICE, TRIGGER):
            owner = (meta.get("labels") or {}).get(GRAPH_LABEL)
            if owner:
                self.mark(namespace, owner)
        elif event.kind is ISVC:
            for graph in self.store.list(GRAPH, namespace):
                if meta["name"] in referenced_services(graph):
                    self.mark(namespace, graph["metadata"]["name"])

    async def reconcile(self, namespace: str, name: str) -> None:
        graph = self.store.find(GRAPH, namespace, name)
        if graph is None:  # deleted: the store cascaded to its router and Triggers
            return
        current = self.store.find(SERVICE, namespace, name)
        isvcs = {
            ref: self.store.find(ISVC, namespace, ref) for ref in sorted(referenced_services(graph))
        }
        broker_name = async_broker(graph)
        broker = self.store.find(BROKER, namespace, broker_name) if broker_name else None
        desired, problem = desired_router(graph, current, isvcs, broker, self.propagate_headers)
        if desired is not None:
            current = self._write(current, desired)
            self._sync_triggers(graph)
        elif problem is not None and problem.reason == "ServiceConflict":
            current = None  # someone else's Service says nothing about this graph
        status = graph_status(graph, current, problem, chain_status_annotations(graph))
        self.store.write_status(GRAPH, graph, status)

    def _write(self, current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
        if current is None:
            return self.store.create(SERVICE, desired, validate=False)
        meta, wanted = current["metadata"], desired["metadata"]
        if (
            current.get("spec") != desired["spec"]
            or meta.get("labels") != wanted["labels"]
            or meta.get("ownerReferences") != wanted["ownerReferences"]
        ):
            current["spec"] = desired["spec"]
            meta["labels"] = wanted["labels"]
            meta["ownerReferences"] = wanted["ownerReferences"]
            current = self.store.replace(SERVICE, current, validate=False)
        return current

    def _sync_triggers(self, graph: Mapping[str, Any]) -> None:
        meta = graph["metadata"]
        namespace = meta["namespace"]
        existing = self.store.list(TRIGGER, namespace, f"{GRAPH_LABEL}={meta['name']}")
        wanted, stale = trigger_plan(graph, existing)
        for trigger in wanted:
            found = self.store.find(TRIGGER, namespace, trigger["metadata"]["name"])
            if found is None:
                self.store.create(TRIGGER, trigger)
            elif controlled_by(found, graph) and found.get("spec") != trigger["spec"]:
                found["spec"] = trigger["spec"]
                self.store.replace(TRIGGER, found)
        for trigger_name in stale:
            self.store.delete(TRIGGER, namespace, trigger_name)
