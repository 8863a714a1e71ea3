"""A revision of the HPA class as the multiscaler drives it: Knative's HPA reconciler in small.

Knative's hpa reconciler (pkg/reconciler/autoscaling/hpa/hpa.go) hands scaling to a Kubernetes
HPA and reports back on the PodAutoscaler: the HPA is "always active" (Active True), the SKS
serves directly (the activator is never in the path), ScaleTargetInitialized once the ready pods
reach min-scale (at least one), and the desired scale is the HPA's. `HPAScaler` does that over
`HorizontalAutoscaler`, with the same `scale`/`observe` calls and `ScaleDecision` answers as
the KPA's `Autoscaler`, so the multiscaler, the Revision's status and `/metrics` treat both
classes alike. The caller sets `pods` (the latest samples of the HPA's resource) before `scale`.
Pure and clock-injected.
"""

from __future__ import annotations

from collections.abc import Callable

from knserve.knative.autoscaler.hpa import HorizontalAutoscaler, HPADecision, HPASpec
from knserve.knative.autoscaler.hpa_replicas import PodSample
from knserve.knative.autoscaler.kpa import ScaleDecision


class HPAScaler:
    """One HPA-class revision (module docstring)."""

    def __init__(self, spec: HPASpec, clock: Callable[[], float], initial_scale: int = 1) -> None:
        self.spec = spec
        self.hpa = HorizontalAutoscaler(spec, clock)
        self.pods: list[PodSample] = []
        # As the Deployment is created: initial-scale replicas, within the HPA's bounds.
        self.replicas = min(max(initial_scale, spec.min_replicas), spec.max_replicas)
        self.last: HPADecision | None = None
        self._initialized = False

    @property
    def resource(self) -> str:
        return self.spec.metric.resource

    def scale(self, ready_pods: int, now: float | None = None) -> ScaleDecision:
        """One HPA sync: the replicas the HPA wants, from `pods`."""
        self.last = self.hpa.scale(self.replicas, self.pods, now)
        self.replicas = self.last.desired
        return self.observe(ready_pods, now)

    def observe(self, ready_pods: int, now: float | None = None) -> ScaleDecision:
        """The PodAutoscaler's status for `ready_pods` ready replicas."""
        if ready_pods < 0:
            raise ValueError(f"ready_pods must be >= 0, got {ready_pods}")
        if ready_pods >= self.spec.min_replicas:
            self._initialized = True
        last = self.last
        current = last.current_metric if last and last.current_metric is not None else 0.0
        return ScaleDecision(
            desired_pods=self.replicas,
            in_panic=False,
            stable_value=current,
            panic_value=0.0,
            excess_burst_capacity=0,
            activator_in_path=False,
            reason=last.reason if last else "initial-scale",
            active="True",
            active_reason="",
            initialized=self._initialized,
        )
