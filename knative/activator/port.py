"""What the data plane offers the rooms above it, as Protocols (the `Gateway` implements both).

- `DataPlane`: the port the Serving controller programs, as Knative's route reconciler programs
  the ingress and the activator learns revisions from their informers: a Route's resolved traffic,
  a revision's concurrency limit and request timeouts, and their removal.
- `TrafficStats`: the per-revision counters the autoscaler reads, as Knative's activator reports
  them to the autoscaler.

The controller and the multiscaler depend on these, not on the `Gateway` class, so a test can
hand them a recorder and the gateway can change behind them.
"""

from __future__ import annotations

from typing import Protocol

from knserve.knative.activator.throttler import RevisionStats
from knserve.knative.activator.traffic import RouteSpec
from knserve.knative.apiserver.outlier_annotations import OutlierDetection


class DataPlane(Protocol):
    """The routes and revisions the gateway serves, set by the Serving controller."""

    def set_route(self, route: RouteSpec) -> None:
        """Serve `route` (replacing a route of the same namespace and name)."""
        ...

    def remove_route(self, namespace: str, name: str) -> None:
        """Stop serving a route."""
        ...

    def set_revision(
        self,
        namespace: str,
        revision: str,
        container_concurrency: int,
        timeout_seconds: int,
        response_start_timeout_seconds: int = 0,
        idle_timeout_seconds: int = 0,
        outlier_detection: OutlierDetection | None = None,
    ) -> None:
        """A revision's per-replica concurrency limit (0 = none), request timeouts and outlier
        detection (None: Istio's defaults)."""
        ...

    def remove_revision(self, namespace: str, revision: str) -> None:
        """Forget a deleted revision."""
        ...


class TrafficStats(Protocol):
    """A revision's traffic as the autoscaler samples it."""

    def stats(self, namespace: str, revision: str) -> RevisionStats:
        """In-flight and total request counts (zeros for a revision never seen)."""
        ...
