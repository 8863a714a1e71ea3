"""The Eventing controller of the local plane: Brokers and Triggers → status and delivery loops.

It works as the Serving controller does (:mod:`knserve.knative.serving.controller`), level-based: any
event about a Broker, a Trigger or something a Trigger points at (a Knative Service, an
InferenceService) marks the object dirty, and reconciling it compares what the spec asks with
what runs:

- a Broker is addressable at ``broker_url(namespace, name)`` (the plane's ingress) as soon as it
  exists; its status says so with Knative's conditions (Addressable, IngressReady, FilterReady,
  DeadLetterSinkResolved). Deleting it stops its triggers' loops and drops its stored events;
- a Trigger's loop runs in the :class:`~knserve.eventing.dispatcher.Dispatcher` when its broker
  exists, its filters compile (:func:`~knserve.eventing.filters.compile_filters`), its delivery is
  valid (the trigger's ``spec.delivery`` replacing the broker's whole, as Knative's) and its
  subscriber and dead-letter sink resolve to URLs. While any of that is missing the trigger is
  *paused*: it keeps its place in the event log, so events accepted meanwhile are delivered once
  it is fixed (stronger than Knative, where a not-ready trigger misses them). Its conditions
  (BrokerReady, DeadLetterSinkResolved, DependencyReady, SubscriberResolved, SubscriptionReady)
  say which part is missing and what to do.

A trigger's key in the log is ``{namespace}/{name}/{broker}/{uid}``: a trigger deleted and
created again starts afresh, and one moved to another broker is a new trigger. Keys of triggers
deleted while the plane was down are forgotten when :meth:`EventingController.run` starts.
Writing an unchanged status is a no-op in the store, so reconciling converges. A reconcile that
fails where no rule above expected it writes Ready=False, reason InternalError, with the failure's
message onto its Broker or Trigger and is retried with back-off (:mod:`knserve.knative.apiserver.reconciler`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlparse

import orjson

from knserve.eventing.backoff import DeliverySpec, InvalidDelivery, resolve
from knserve.eventing.dispatcher import Dispatcher
from knserve.eventing.eventlog import EventLog
from knserve.eventing.filters import FilterError, compile_filters
from knserve.knative.apiserver.kinds import Kind, named
from knserve.knative.apiserver.reconciler import WorkQueue, condition, mark_failed, watching
from knserve.knative.apiserver.store import Event, Store

__all__ = ["EventingController", "trigger_key"]

log = logging.getLogger(__name__)

BROKER, TRIGGER, SERVICE, ISVC = (
    named(k) for k in ("brokers", "triggers", "services", "inferenceservices")
)
NO_DEAD_LETTER_SINK = "No dead letter sink is configured."  # Knative's message, word for word


def trigger_key(trigger: Mapping[str, Any]) -> str:
    """The trigger's key in the event log (see the module docstring)."""
    meta = trigger["metadata"]
    broker = (trigger.get("spec") or {}).get("broker") or ""
    return f"{meta['namespace']}/{meta['name']}/{broker}/{meta['uid']}"


def _ready(
    conditions: list[dict[str, Any]], previous: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """Ready from the others: True when all are, else the first one that is not (False wins)."""
    worst = next((c for c in conditions if c["status"] == "False"), None) or next(
        (c for c in conditions if c["status"] != "True"), None
    )
    if worst is None:
        return condition("Ready", "True", previous=previous)
    return condition("Ready", worst["status"], worst.get("reason"), worst.get("message"), previous)


class _Unresolved(Exception):
    """A destination that does not resolve to a URL (yet): ``reason`` and ``message`` for status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class EventingController:
    """Reconciles Brokers and Triggers on the local plane (see the module docstring).

    ``resolve_service_url(namespace, name)`` gives a Knative Service's URL (its ``status.url``)
    or None; ``broker_url(namespace, name)`` the ingress URL of a broker.
    """

    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        log: EventLog,
        resolve_service_url: Callable[[str, str], str | None],
        broker_url: Callable[[str, str], str],
    ) -> None:
        self.store, self.dispatcher, self.log = store, dispatcher, log
        self.resolve_service_url, self.broker_url = resolve_service_url, broker_url
        self._queue: WorkQueue[tuple[str, str, str]] = WorkQueue()  # (plural, namespace, name)
        self._brokers = {_id(b) for b in store.list(BROKER)}
        self._applied: dict[str, bytes] = {}  # trigger key -> what set_trigger was last given
        self._keys: dict[tuple[str, str], str] = {}  # (namespace, trigger) -> its key now
        # (kind, namespace, name) -> the Triggers and Brokers that name it, kept from the store's
        # events, so a Service's status write is not a scan of every Trigger
        self._referrers: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
        self._refers: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}

    def broker_exists(self, namespace: str, name: str) -> bool:
        """Whether a broker exists (wire to ``Ingress(broker_exists=...)``); kept in memory
        from the store's events, so the ingress's hot path does no query."""
        return (namespace, name) in self._brokers

    def triggers(self) -> list[tuple[str, str, str]]:
        """(namespace, trigger name, key) of every trigger handed to the dispatcher (for metrics)."""
        return [(namespace, name, key) for (namespace, name), key in self._keys.items()]

    # ---- the loop ------------------------------------------------------------------------------

    def mark(self, kind: Kind, namespace: str, name: str) -> None:
        self._queue.mark((kind.plural, namespace, name))

    async def run(self) -> None:
        async with watching(self.store, self._handle, "eventing-controller-watch"):
            brokers, triggers = self.store.list(BROKER), self.store.list(TRIGGER)
            self._brokers = {_id(b) for b in brokers}
            wanted = {
                trigger_key(t)
                for t in triggers
                if (t["metadata"]["namespace"], (t.get("spec") or {}).get("broker"))
                in self._brokers
            }
            for key in self.log.trigger_keys():
                if key not in wanted:  # its Trigger or Broker was deleted while the plane was down
                    self.log.remove_trigger(key)
            for kind, objs in ((BROKER, brokers), (TRIGGER, triggers)):
                for obj in objs:
                    self._index(kind, obj, deleted=False)
                    self.mark(kind, *_id(obj))
            await self._queue.run(self._reconcile, "broker/trigger", self._failed)

    def _failed(self, key: tuple[str, str, str], message: str) -> None:
        plural, namespace, name = key
        mark_failed(self.store, named(plural), namespace, name, message)

    async def _reconcile(self, key: tuple[str, str, str]) -> None:
        plural, namespace, name = key
        if plural == BROKER.plural:
            self.reconcile_broker(namespace, name)
        else:
            await self.reconcile_trigger(namespace, name)

    async def _handle(self, event: Event) -> None:
        obj, kind = event.object, event.kind
        namespace, name = _id(obj)
        if kind in (BROKER, TRIGGER):
            self._index(kind, obj, deleted=event.type == "DELETED")
        if kind is BROKER:
            if event.type == "DELETED":
                self._brokers.discard((namespace, name))
                for key in self.dispatcher.keys(namespace, name):
                    await self.dispatcher.remove_trigger(key)
                    self._applied.pop(key, None)
                self.log.remove_broker(namespace, name)
            else:
                self._brokers.add((namespace, name))
                self.mark(BROKER, namespace, name)
        elif kind is TRIGGER:
            if event.type == "DELETED":
                gone = self._keys.pop((namespace, name), None) or trigger_key(obj)
                await self.dispatcher.remove_trigger(gone)
                self._applied.pop(gone, None)
            else:
                self.mark(TRIGGER, namespace, name)
        if kind in (SERVICE, ISVC, BROKER):
            # Triggers on it, and Triggers or Brokers pointing at it (subscriber, dead-letter sink)
            for plural, ns, referrer in list(self._referrers.get((kind.kind, namespace, name), ())):
                if plural == TRIGGER.plural or kind is not BROKER:
                    self._queue.mark((plural, ns, referrer))

    def _index(self, kind: Kind, obj: Mapping[str, Any], deleted: bool) -> None:
        """Keep what a Trigger or Broker refers to in `_referrers` (none once it is deleted)."""
        key = (kind.plural, *_id(obj))
        for target in self._refers.pop(key, set()):
            referrers = self._referrers.get(target, set())
            referrers.discard(key)
            if not referrers:
                self._referrers.pop(target, None)
        if not deleted:
            self._refers[key] = targets = _references(kind, obj)
            for target in targets:
                self._referrers.setdefault(target, set()).add(key)

    # ---- a broker ------------------------------------------------------------------------------

    def reconcile_broker(self, namespace: str, name: str) -> None:
        broker = self.store.find(BROKER, namespace, name)
        if broker is None:
            return  # deleted: the watch stopped its triggers
        previous = (broker.get("status") or {}).get("conditions")
        url = self.broker_url(namespace, name)
        status: dict[str, Any] = {
            "observedGeneration": broker["metadata"]["generation"],
            "address": {"name": "http", "url": url},
            "addresses": [{"name": "http", "url": url}],
        }
        spec = broker.get("spec") or {}
        try:
            delivery = DeliverySpec.from_spec(spec.get("delivery"), "spec.delivery")
            filter_ready = condition("FilterReady", "True", previous=previous)
        except InvalidDelivery as exc:
            delivery = None
            filter_ready = condition("FilterReady", "False", "InvalidDelivery", str(exc), previous)
        dls = self._dead_letter_condition(delivery, namespace, "spec.delivery", previous, status)
        conditions = [
            condition("Addressable", "True", previous=previous),
            dls,
            filter_ready,
            condition("IngressReady", "True", previous=previous),
        ]
        status["conditions"] = [_ready(conditions, previous), *conditions]
        self.store.write_status(BROKER, broker, status)

    # ---- a trigger -----------------------------------------------------------------------------

    async def reconcile_trigger(self, namespace: str, name: str) -> None:
        trigger = self.store.find(TRIGGER, namespace, name)
        if trigger is None:
            return  # deleted: the watch removed its loop
        spec = trigger.get("spec") or {}
        previous = (trigger.get("status") or {}).get("conditions")
        status: dict[str, Any] = {"observedGeneration": trigger["metadata"]["generation"]}
        key = trigger_key(trigger)
        old_key = self._keys.get((namespace, name))
        if old_key is not None and old_key != key:  # moved to another broker: a new trigger
            await self.dispatcher.remove_trigger(old_key)
            self._applied.pop(old_key, None)
        broker_name = spec.get("broker")
        broker = self.store.find(BROKER, namespace, broker_name) if broker_name else None
        broker_ready = self._broker_condition(broker, broker_name, namespace, previous)

        try:
            subscriber_url = self._resolve(spec.get("subscriber"), namespace, "spec.subscriber")
            subscriber = condition("SubscriberResolved", "True", previous=previous)
            status["subscriberUri"] = subscriber_url
        except _Unresolved as exc:
            subscriber_url = None
            subscriber = condition("SubscriberResolved", "False", exc.reason, exc.message, previous)

        subscription, delivery, predicate = None, None, None
        try:
            predicate = compile_filters(
                (spec.get("filter") or {}).get("attributes"), spec.get("filters")
            )
            broker_delivery = (broker or {}).get("spec", {}).get("delivery")
            delivery = resolve(spec.get("delivery"), broker_delivery)
        except FilterError as exc:
            subscription = condition(
                "SubscriptionReady", "False", "InvalidFilter", str(exc), previous
            )
        except InvalidDelivery as exc:
            subscription = condition(
                "SubscriptionReady", "False", "InvalidDelivery", str(exc), previous
            )
        where = (
            "spec.delivery"
            if spec.get("delivery") is not None
            else f'broker "{broker_name}" spec.delivery'
        )
        dls = self._dead_letter_condition(delivery, namespace, where, previous, status)
        if subscription is None:
            subscription = condition("SubscriptionReady", "True", previous=previous)
        conditions = [
            broker_ready,
            dls,
            condition("DependencyReady", "True", previous=previous),
            subscriber,
            subscription,
        ]
        ready = _ready(conditions, previous)
        status["conditions"] = [ready, *conditions]

        if broker is None or not broker_name:  # (a broker is found only by its name)
            await self.dispatcher.remove_trigger(key)  # no broker, no events: nothing to keep
            self._applied.pop(key, None)
            self._keys.pop((namespace, name), None)
        elif ready["status"] == "True" and subscriber_url and delivery and predicate:
            applied = orjson.dumps(
                [spec, broker.get("spec"), subscriber_url, status.get("deadLetterSinkUri")],
                option=orjson.OPT_SORT_KEYS,
            )
            if self._applied.get(key) != applied or not self.dispatcher.running(key):
                self.dispatcher.set_trigger(
                    key,
                    namespace,
                    broker_name,
                    subscriber_url,
                    predicate,
                    delivery,
                    status.get("deadLetterSinkUri"),
                )
                self._applied[key] = applied
            self._keys[(namespace, name)] = key
        else:
            await self.dispatcher.pause_trigger(key, namespace, broker_name)
            self._applied.pop(key, None)
            self._keys[(namespace, name)] = key
        self.store.write_status(TRIGGER, trigger, status)

    def _broker_condition(
        self,
        broker: dict[str, Any] | None,
        name: str | None,
        namespace: str,
        previous: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        if not name:
            return condition(
                "BrokerReady",
                "False",
                "BrokerNotSpecified",
                "spec.broker is empty: name the Broker whose events this trigger "
                "delivers (e.g. default)",
                previous,
            )
        if broker is None:
            return condition(
                "BrokerReady",
                "False",
                "BrokerDoesNotExist",
                f'broker "{name}" not found in namespace "{namespace}"; create it '
                f"with `knserve broker create {name} -n {namespace}`",
                previous,
            )
        ready: dict[str, Any] | None = next(
            (
                c
                for c in (broker.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready"
            ),
            None,
        )
        if ready is None:
            return condition(
                "BrokerReady",
                "Unknown",
                "BrokerNotReconciled",
                f'broker "{name}" has no status yet',
                previous,
            )
        if ready.get("status") != "True":
            return condition(
                "BrokerReady",
                ready.get("status", "Unknown"),
                ready.get("reason") or "BrokerNotReady",
                f'broker "{name}" is not ready: {ready.get("message", "")}'.rstrip(": "),
                previous,
            )
        return condition("BrokerReady", "True", previous=previous)

    def _dead_letter_condition(
        self,
        delivery: DeliverySpec | None,
        namespace: str,
        where: str,
        previous: list[dict[str, Any]] | None,
        status: dict[str, Any],
    ) -> dict[str, Any]:
        sink = delivery.dead_letter_sink if delivery is not None else None
        if not sink:
            return condition(
                "DeadLetterSinkResolved",
                "True",
                "DeadLetterSinkNotConfigured",
                NO_DEAD_LETTER_SINK,
                previous,
            )
        try:
            status["deadLetterSinkUri"] = self._resolve(sink, namespace, f"{where}.deadLetterSink")
        except _Unresolved as exc:
            return condition("DeadLetterSinkResolved", "False", exc.reason, exc.message, previous)
        return condition("DeadLetterSinkResolved", "True", previous=previous)

    # ---- destinations --------------------------------------------------------------------------

    def _resolve(self, destination: Any, namespace: str, path: str) -> str:
        """A Knative Destination (``ref`` and/or ``uri``) as a URL, or :class:`_Unresolved`."""
        if not isinstance(destination, Mapping) or not (
            destination.get("ref") or destination.get("uri")
        ):
            raise _Unresolved(
                "SubscriberNotSpecified" if path == "spec.subscriber" else "SinkNotSpecified",
                f"{path} needs a ref (e.g. to a Knative Service) or a uri",
            )
        uri, ref = destination.get("uri"), destination.get("ref")
        if not ref:
            parsed = urlparse(str(uri))
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise _Unresolved(
                    "InvalidURI",
                    f'{path}.uri "{uri}" is not an absolute http(s) URL; '
                    "write e.g. http://localhost:9000/events, or use a ref",
                )
            return str(uri)
        base = self._resolve_ref(ref, namespace, f"{path}.ref")
        return (
            urljoin(base if base.endswith("/") else base + "/", str(uri).lstrip("/"))
            if uri
            else base
        )

    def _resolve_ref(self, ref: Mapping[str, Any], namespace: str, path: str) -> str:
        kind, api_version = ref.get("kind"), ref.get("apiVersion")
        name, ns = ref.get("name"), ref.get("namespace") or namespace
        if not name or not kind:
            raise _Unresolved("InvalidReference", f"{path} needs kind and name")
        target = _ADDRESSABLE.get(kind)
        if target is None or (api_version and api_version != target.api_version):
            known = ", ".join(f"{k.api_version} {k.kind}" for k in _ADDRESSABLE.values())
            raise _Unresolved(
                "UnsupportedReference",
                f"{path} is a {api_version or '(no apiVersion)'} {kind}, which the local "
                f"plane cannot address; refer to one of: {known}, or give a uri",
            )
        if target is SERVICE:
            url = self.resolve_service_url(ns, name)
            if url:
                return url
        obj = self.store.find(target, ns, name)
        if obj is None:
            raise _Unresolved(
                "NotFound", f'{target.kind.lower()} "{name}" not found in namespace "{ns}"'
            )
        if target is BROKER:
            return self.broker_url(ns, name)
        url = (obj.get("status") or {}).get("url") or (
            (obj.get("status") or {}).get("address") or {}
        ).get("url")
        if target is ISVC and url:
            return str(url)
        ready: dict[str, Any] = next(
            (
                c
                for c in (obj.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready"
            ),
            {},
        )
        why = (
            f": {ready.get('reason')} {ready.get('message', '')}".rstrip()
            if ready.get("reason")
            else ""
        )
        raise _Unresolved(
            "NotReady",
            f'{target.kind.lower()} "{name}" in namespace "{ns}" has no URL yet (not ready{why})',
        )


_ADDRESSABLE = {k.kind: k for k in (SERVICE, BROKER, ISVC)}


def _id(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _references(kind: Kind, obj: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of what a Trigger's broker, subscriber or dead-letter sink, or a
    Broker's dead-letter sink, refers to."""
    namespace = obj["metadata"]["namespace"]

    def field(parent: Any, name: str) -> Any:  # stored before admission, it may have any shape
        return parent.get(name) if isinstance(parent, Mapping) else None

    spec = obj.get("spec")
    refs = [
        field(field(spec, "subscriber"), "ref"),
        field(field(field(spec, "delivery"), "deadLetterSink"), "ref"),
    ]
    found = {
        (str(ref.get("kind")), str(ref.get("namespace") or namespace), str(ref.get("name")))
        for ref in refs
        if isinstance(ref, Mapping)
    }
    broker = field(spec, "broker")
    if kind is TRIGGER and broker:
        found.add((BROKER.kind, namespace, str(broker)))
    return found
