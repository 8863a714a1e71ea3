"""The gateway's per-revision request counts and latencies, under Knative's metric names.

On a cluster a request that passes the activator is counted twice: by the activator
(`activator_request_count`, `activator_request_latencies`) and by the queue-proxy in front of the
pod that answers it (`revision_request_count`, `revision_request_latencies`, and, for what the user
container itself answered, `revision_app_request_count`, `revision_app_request_latencies`). The
gateway is ingress, activator and every queue-proxy at once, so it keeps both views:

- the activator's: every request routed to the revision, from its arrival (queueing and a cold
  start included) to the end of its response, whoever answered it (the gateway's own 503/504 too);
- each replica's: requests given to that replica, from the moment it was picked; the `app` ones
  are those whose status line came from the replica (not a 502/504 the gateway wrote instead).

Labels are Knative's (pkg/metrics): `namespace_name`, `service_name`, `configuration_name`,
`revision_name`, `pod_name`, `container_name`, `response_code`, `response_code_class`; latencies
are in milliseconds with Knative's default buckets. A request whose client went away before any
response has no code and is not counted (its time is in the autoscaler's concurrency all the same).

The hot path only adds to plain numbers on the throttler and the replica (`record`, about a
microsecond of CPU); Prometheus' families are built from them when someone scrapes (`GatewayCollector`).
Also here, beside them: `knserve_revision_cold_starts_total`, requests that found no replica ready
and were held while one started; `knserve_revision_requests_rejected_total` by `reason`, requests
the gateway answered 503 at once (`queue_full`: beyond the breakers' queue, knserve.knative.activator.
breaker; `all_ejected`: every replica out by outlier detection); and
`knserve_revision_outlier_ejections_total` and `knserve_revision_outlier_ejected`, replicas ejected
so far and out now (knserve.knative.activator.outlier).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily, Metric

# Knative's defaultLatencyDistribution (serving pkg/metrics), in milliseconds.
LATENCY_BUCKETS_MS = (
    5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500,
    600, 700, 800, 900, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip
_BOUNDS = tuple(float(b) for b in LATENCY_BUCKETS_MS)  # float against float bisects twice as fast
_LE = [str(b) for b in _BOUNDS] + ["+Inf"]
ACTIVATOR_POD = "gateway"  # the activator's pod_name: the plane has one gateway
ACTIVATOR_CONTAINER = "activator"
QUEUE_PROXY_CONTAINER = "queue-proxy"

LABELS = (
    "namespace_name",
    "service_name",
    "configuration_name",
    "revision_name",
    "pod_name",
    "container_name",
    "response_code",
    "response_code_class",
)

# (namespace, revision) -> (service, configuration): from the Revision's labels.
ServiceOf = Callable[[str, str], tuple[str, str]]


class Tally:
    """Responses of one status: how many, their total and their histogram (milliseconds)."""

    __slots__ = ("buckets", "count", "sum_ms")

    def __init__(self) -> None:
        self.count = 0
        self.sum_ms = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)


class StatusTallies(dict[int, Tally]):
    """Tallies by response status code. A replica's are keyed by the negated code for statuses
    the gateway wrote instead of the replica (502, 504), so the hot path builds no tuple."""

    def __missing__(self, status: int) -> Tally:
        tally = self[status] = Tally()
        return tally


def record(revision: Any, exchange: Any, now: float) -> None:
    """Count `exchange`'s response for its revision and, if one was picked, its replica.

    `revision` is the `RevisionThrottler` (its `requests`), `exchange.replica` a `Replica` (its
    `served`); `now` is the loop's clock when the response ended. Inline arithmetic, no calls
    but one bisect per tally: this runs for every request.
    """
    status = exchange.status
    if not status:
        return  # the client went away before any response
    arrived = exchange.arrived
    ms = (now - arrived) * 1000.0
    tally = revision.requests[status]
    tally.count += 1
    tally.sum_ms += ms
    tally.buckets[bisect_left(_BOUNDS, ms)] += 1
    replica = exchange.replica
    if replica is not None:
        assigned = exchange.assigned
        if assigned != arrived:
            ms = (now - assigned) * 1000.0
        # the status line is the replica's own unless the gateway wrote one in its place
        tally = replica.served[status if exchange.response_started else -status]
        tally.count += 1
        tally.sum_ms += ms
        tally.buckets[bisect_left(_BOUNDS, ms)] += 1


class _Families:
    """One counter and one histogram family, filled label set by label set."""

    def __init__(self, count: str, latencies: str, what: str) -> None:
        # Knative's counters carry no `_total` (OpenCensus' exporter wrote them so) and dashboards
        # query them by that name; prometheus_client would add the suffix to a "counter", so the
        # family is untyped. PromQL's rate() and increase() work on it all the same.
        self.count = Metric(count, f"The number of requests {what}.", "unknown")
        self.latencies = HistogramMetricFamily(
            latencies,
            f"The response time in milliseconds of the requests {what}.",
            labels=LABELS,
        )

    def add(self, base: list[str], tallies: dict[int, Tally]) -> None:
        for status, tally in sorted(tallies.items()):
            values = [*base, str(status), f"{status // 100}xx"]
            labels = dict(zip(LABELS, values, strict=True))
            self.count.add_sample(self.count.name, labels, tally.count)
            cumulative, total = [], 0
            for le, n in zip(_LE, tally.buckets, strict=True):
                total += n
                cumulative.append((le, total))
            self.latencies.add_metric(values, cumulative, tally.sum_ms)

    def families(self) -> Iterator[Metric]:
        yield self.count
        yield self.latencies


class GatewayCollector:
    """Prometheus collector over the gateway's throttlers, read at scrape time."""

    def __init__(self, gateway: Any, service_of: ServiceOf | None = None) -> None:
        self.gateway = gateway
        self.service_of = service_of or (lambda namespace, revision: ("", ""))

    def collect(self) -> Iterator[Metric]:
        activator = _Families(
            "activator_request_count",
            "activator_request_latencies",
            "routed to the revision by the gateway (its activator)",
        )
        revision = _Families(
            "revision_request_count",
            "revision_request_latencies",
            "given to a replica of the revision (its queue-proxy)",
        )
        app = _Families(
            "revision_app_request_count",
            "revision_app_request_latencies",
            "answered by the replica's container itself",
        )
        cold = Metric(
            "knserve_revision_cold_starts",
            "Requests held by the gateway while no replica of the revision was ready.",
            "counter",
        )
        rejected = Metric(
            "knserve_revision_requests_rejected",
            "Requests answered 503 at once: the queue was full, or every replica was ejected.",
            "counter",
        )
        ejections = Metric(
            "knserve_revision_outlier_ejections",
            "Replicas ejected by outlier detection after consecutive errors.",
            "counter",
        )
        ejected = Metric(
            "knserve_revision_outlier_ejected",
            "Replicas out of rotation by outlier detection now.",
            "gauge",
        )
        for state in self.gateway.throttlers():
            namespace, name = state.namespace, state.name
            service, configuration = self.service_of(namespace, name)
            base = [namespace, service, configuration, name]
            activator.add([*base, ACTIVATOR_POD, ACTIVATOR_CONTAINER], state.requests)
            for replica in state.replicas.values():
                pod = [*base, replica.endpoint, QUEUE_PROXY_CONTAINER]
                revision.add(pod, _merged(replica.served))
                app.add(pod, {code: t for code, t in replica.served.items() if code > 0})
            cold.add_sample(
                "knserve_revision_cold_starts_total",
                {"namespace": namespace, "revision": name},
                state.cold_starts,
            )
            where = {"namespace": namespace, "revision": name}
            for reason, count in (
                ("queue_full", state.queue_full),
                ("all_ejected", state.all_ejected),
            ):
                rejected.add_sample(
                    "knserve_revision_requests_rejected_total", {**where, "reason": reason}, count
                )
            outliers = state.outliers
            ejections.add_sample(
                "knserve_revision_outlier_ejections_total", where, outliers.ejections_total
            )
            ejected.add_sample("knserve_revision_outlier_ejected", where, outliers.ejected())
        yield from activator.families()
        yield from revision.families()
        yield from app.families()
        yield cold
        yield rejected
        yield ejections
        yield ejected


def _merged(tallies: StatusTallies) -> dict[int, Tally]:
    """A replica's tallies by status code, whoever wrote the status line."""
    out: dict[int, Tally] = {}
    for key, tally in tallies.items():
        code = abs(key)
        found = out.get(code)
        if found is None:
            out[code] = tally
            continue
        merged = out[code] = Tally()
        merged.count = found.count + tally.count
        merged.sum_ms = found.sum_ms + tally.sum_ms
        merged.buckets = [a + b for a, b in zip(found.buckets, tally.buckets, strict=True)]
    return out
