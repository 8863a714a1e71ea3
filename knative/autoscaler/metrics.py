"""`/metrics` of the local plane: each revision's replicas, autoscaler state and traffic.

The names follow Knative's autoscaler metrics (`desired_pods`, `actual_pods`, `panic_mode`,
`stable_request_concurrency`, `excess_burst_capacity`, …) plus the replicas' CPU and memory
and, for the HPA class, its current and target metric under the `knserve_revision_` prefix, one
series per revision, and `knserve_autoscaler_ticks_total` counts the autoscaler's decision rounds
(a scraper, or a test, can wait for it to have looked again). They are read at scrape time from the
multiscaler, the supervisor and the gateway, so nothing is kept twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LABELS = ["namespace", "revision"]


class PlaneCollector(Collector):
    """Prometheus collector over the plane's live state."""

    def __init__(self, scaler: Any, supervisor: Any, gateway: Any) -> None:
        self.scaler = scaler
        self.supervisor = supervisor
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        gauges = {
            name: GaugeMetricFamily(f"knserve_revision_{name}", text, labels=LABELS)
            for name, text in [
                ("desired_pods", "Replicas the autoscaler wants."),
                ("actual_pods", "Ready replicas."),
                ("panic_mode", "1 while the autoscaler is in panic mode."),
                ("stable_request_concurrency", "Observed value over the stable window."),
                ("panic_request_concurrency", "Observed value over the panic window."),
                ("excess_burst_capacity", "Spare capacity minus target-burst-capacity."),
                ("activator_in_path", "1 while requests are held or queued by the activator."),
                ("requests_in_flight", "Requests accepted by the gateway and not yet answered."),
                ("cpu_millicores", "CPU of the replicas' processes, summed (1000 = one core)."),
                ("memory_bytes", "Resident memory of the replicas' processes, summed."),
                ("hpa_current_metric", "HPA class: utilization (%) or average value now."),
                ("hpa_target_metric", "HPA class: the target utilization (%) or average value."),
            ]
        }
        requests = CounterMetricFamily(
            "knserve_revision_requests", "Requests routed to the revision.", labels=LABELS
        )
        for (namespace, revision), decision in self.scaler.decisions().items():
            labels = [namespace, revision]
            status = self.supervisor.status(namespace, revision)
            stats = self.gateway.stats(namespace, revision)
            usage = self.scaler.usage(namespace, revision)
            hpa = self.scaler.hpa(namespace, revision)
            if hpa is not None:
                current = hpa.last.current_metric if hpa.last else None
                if current is not None:
                    gauges["hpa_current_metric"].add_metric(labels, current)
                gauges["hpa_target_metric"].add_metric(labels, hpa.spec.metric.value)
            for name, value in [
                ("desired_pods", decision.desired_pods),
                ("actual_pods", status.ready),
                ("panic_mode", int(decision.in_panic)),
                ("stable_request_concurrency", decision.stable_value),
                ("panic_request_concurrency", decision.panic_value),
                ("excess_burst_capacity", decision.excess_burst_capacity),
                ("activator_in_path", int(decision.activator_in_path)),
                ("requests_in_flight", stats.in_flight),
                ("cpu_millicores", usage.cpu),
                ("memory_bytes", usage.memory),
            ]:
                gauges[name].add_metric(labels, float(value))
            requests.add_metric(labels, float(stats.requests_total))
        yield from gauges.values()
        yield requests
        ticks = CounterMetricFamily(
            "knserve_autoscaler_ticks", "Decision rounds of the autoscaler."
        )
        ticks.add_metric([], float(self.scaler.ticks))
        yield ticks
