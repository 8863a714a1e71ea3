"""Outlier ejection of a revision's replicas, as Istio's DestinationRule `outlierDetection` does it.

Istio programs Envoy's outlier detection (envoy.config.cluster.v3.OutlierDetection); the plane's
gateway keeps the same state machine per revision, over its replicas:

- Every response a replica gives (or the gateway gives in its place) is an observation: 5xx counts
  toward `consecutive5xxErrors` (default 5), 502/503/504 and a connection that could not be made
  or broke before any answer count toward `consecutiveGatewayErrors` (default 0, off) and toward
  the 5xx count too, as Envoy maps such local failures to 5xx. Any other status resets both counts.
- A replica whose count reaches its threshold is ejected, at once (Envoy ejects for consecutive
  errors inline, not at the sweep), unless too many are ejected already: the first ejection is
  always allowed, a further one only while the ejected share is below `maxEjectionPercent`
  (Istio's default 10 %, so one replica of a few).
- It stays out for `baseEjectionTime` (default 30 s) × the number of times it was ejected,
  at most Envoy's `max_ejection_time` (300 s, or the base if that is longer). The count falls by
  one for every `interval` (default 10 s) the replica then spends in rotation, so a replica that
  recovered starts again from the base.
- When its time is up it rejoins with its error counts at zero.

Per revision, annotations on the Revision (its Service's template) set these, named after the
DestinationRule's fields (knserve.knative.apiserver.outlier_annotations).

Pure: the caller passes the time (its loop's clock) and gets decisions; no I/O, no timers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from knserve.knative.apiserver.outlier_annotations import OutlierDetection

GATEWAY_ERRORS = frozenset({502, 503, 504})
CONNECTION_FAILURE = 0  # the status observed for a replica that could not be reached


@dataclass
class HostState:
    """One replica's record: its error runs, its ejections, and until when it is out."""

    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    ejections: int = 0  # the multiplier of the base ejection time
    ejected_until: float | None = None
    rejoined_at: float = 0.0


@dataclass
class OutlierDetector:
    """The outlier state of one revision's replicas, keyed by endpoint."""

    config: OutlierDetection = field(default_factory=OutlierDetection)
    hosts: dict[str, HostState] = field(default_factory=dict)
    ejections_total: int = 0

    def ejected(self) -> int:
        """How many replicas are out now."""
        return sum(1 for host in self.hosts.values() if host.ejected_until is not None)

    def observe(self, endpoint: str, status: int, now: float, replicas: int) -> float | None:
        """Record a response of `status` (CONNECTION_FAILURE for none) from `endpoint`, one of
        `replicas` replicas; the time it rejoins if this ejects it, else None."""
        host = self.hosts.get(endpoint)
        if host is None:
            host = self.hosts[endpoint] = HostState()
        if host.ejected_until is not None:
            return None  # an answer to a request sent before the ejection
        gateway = status == CONNECTION_FAILURE or status in GATEWAY_ERRORS
        if status < 500 and not gateway:
            host.consecutive_5xx = host.consecutive_gateway = 0
            return None
        host.consecutive_5xx += 1
        if gateway:
            host.consecutive_gateway += 1
        config = self.config
        tripped = (
            0 < config.consecutive_5xx_errors <= host.consecutive_5xx
            or 0 < config.consecutive_gateway_errors <= host.consecutive_gateway
        )
        if not tripped or not self._may_eject(replicas):
            return None
        if host.ejections and config.interval > 0:
            # Envoy lowers the multiplier for each interval the host spent in rotation.
            healthy_intervals = int((now - host.rejoined_at) // config.interval)
            host.ejections = max(0, host.ejections - healthy_intervals)
        host.ejections += 1
        host.consecutive_5xx = host.consecutive_gateway = 0
        host.ejected_until = now + config.ejection_time(host.ejections)
        self.ejections_total += 1
        return host.ejected_until

    def _may_eject(self, replicas: int) -> bool:
        ejected = self.ejected()
        if ejected == 0:
            return True  # Envoy always allows the first one
        return replicas > 0 and 100 * ejected / replicas < self.config.max_ejection_percent

    def rejoin(self, endpoint: str, now: float) -> bool:
        """Whether `endpoint`'s ejection is over at `now` (it is then back in rotation)."""
        host = self.hosts.get(endpoint)
        if host is None or host.ejected_until is None:
            return True
        if now < host.ejected_until:
            return False
        host.ejected_until = None
        host.rejoined_at = now
        return True

    def is_ejected(self, endpoint: str) -> bool:
        host = self.hosts.get(endpoint)
        return host is not None and host.ejected_until is not None

    def next_rejoin(self) -> float | None:
        """The earliest time an ejected replica rejoins (None if none is out)."""
        times = [h.ejected_until for h in self.hosts.values() if h.ejected_until is not None]
        return min(times) if times else None

    def retain(self, endpoints: Iterable[str]) -> None:
        """Forget replicas that are gone, so the record does not grow with replica churn."""
        keep = set(endpoints)
        for endpoint in [e for e in self.hosts if e not in keep]:
            del self.hosts[endpoint]
