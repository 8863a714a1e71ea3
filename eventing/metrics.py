"""The broker's counters for Prometheus, read at scrape time from the ingress and the dispatcher.

Knative's broker ingress and filter export `event_count` by broker and trigger with response codes;
the plane's broker knows, more usefully here, what became of each event: accepted by the ingress
(stored in the log), and per trigger delivered, retried, dead-lettered (the dead-letter sink took it)
or dropped (given up on with no sink that took it). Labels are Knative's eventing ones
(`namespace_name`, `broker_name`, `trigger_name`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily

TRIGGER_COUNTERS = (
    ("delivered", "Events the trigger's subscriber accepted (2xx)."),
    ("retried", "Delivery attempts that failed and were scheduled again."),
    ("dead_lettered", "Events given up on that the dead-letter sink took."),
    ("dropped", "Events given up on with no dead-letter sink that took them."),
)


class BrokerCollector:
    """Prometheus collector over the plane's broker: `ingress` (its `accepted` counts),
    `controller` (its `triggers()`) and `dispatcher` (each trigger's `stats` and broker)."""

    def __init__(self, ingress: Any, controller: Any, dispatcher: Any) -> None:
        self.ingress = ingress
        self.controller = controller
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[CounterMetricFamily]:
        accepted = CounterMetricFamily(
            "knserve_broker_events_accepted",
            "Events the broker ingress accepted (stored in the event log).",
            labels=["namespace_name", "broker_name"],
        )
        for (namespace, broker), count in sorted(self.ingress.accepted.items()):
            accepted.add_metric([namespace, broker], count)
        yield accepted
        families = {
            name: CounterMetricFamily(
                f"knserve_trigger_events_{name}",
                text,
                labels=["namespace_name", "broker_name", "trigger_name"],
            )
            for name, text in TRIGGER_COUNTERS
        }
        for namespace, trigger, key in sorted(self.controller.triggers()):
            broker = self.dispatcher.broker_of(key)
            if broker is None:
                continue
            stats = self.dispatcher.stats(key)
            for name, _ in TRIGGER_COUNTERS:
                families[name].add_metric([namespace, broker, trigger], getattr(stats, name))
        yield from families.values()
