"""Kubernetes' HorizontalPodAutoscaler (autoscaling/v2) for one revision, pure and clock-injected.

`HorizontalAutoscaler.scale` is one pass of kubernetes pkg/controller/podautoscaler/horizontal.go's
`reconcileAutoscaler` over one resource metric:

- replicas above max or below min go to the bound first, without reading the metric;
- else the replica calculator (`hpa_replicas.replicas_for_metric`) proposes a count; a metric
  that cannot be computed keeps the replicas as they are (ScalingActive False,
  FailedGetResourceMetric), as the HPA does;
- the proposal is stabilized (`stabilizeRecommendationWithBehaviors`): it may not go above the
  lowest recommendation of the scale-up window nor below the highest of the scale-down window
  (300 s by default: kube-controller-manager's --horizontal-pod-autoscaler-downscale-stabilization);
- then the behavior's rate policies limit the change (`convertDesiredReplicasWithBehaviorRate`):
  by default up to +4 pods or +100 % per 15 s, whichever is more, and down by 100 % per 15 s;
  and min/max bound it.

It never reads the wall clock; the caller passes replica samples, calls `scale` on its sync
period (the HPA's is 15 s; the plane uses its tick) and applies `HPADecision.desired`. An HPA
never scales to zero: `min_replicas` is at least 1.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from knserve.knative.autoscaler.hpa_replicas import (
    TOLERANCE,
    MetricError,
    MetricTarget,
    PodSample,
    replicas_for_metric,
)

DOWNSCALE_STABILIZATION = 300.0  # kube-controller-manager's default, in seconds
MAX_REPLICAS = 2**31 - 1  # Knative's HPA when max-scale is 0: no limit


@dataclass(frozen=True)
class ScalingPolicy:
    """An HPAScalingPolicy: change by `value` pods, or `value` percent, per `period` seconds."""

    type: str  # "Pods" or "Percent"
    value: int
    period: float


@dataclass(frozen=True)
class ScalingRules:
    """HPAScalingRules; `stabilization_window` None means the controller's default."""

    stabilization_window: float | None
    policies: tuple[ScalingPolicy, ...]
    select_policy: str = "Max"  # "Max", "Min" or "Disabled"


# autoscaling/v2's defaults (SetDefaults_HorizontalPodAutoscalerBehavior).
SCALE_UP = ScalingRules(0.0, (ScalingPolicy("Pods", 4, 15.0), ScalingPolicy("Percent", 100, 15.0)))
SCALE_DOWN = ScalingRules(None, (ScalingPolicy("Percent", 100, 15.0),))
# Kubernetes' default metric when an HPA names none: 80 % of the CPU request.
DEFAULT_METRIC = MetricTarget("cpu", "Utilization", 80.0)


@dataclass(frozen=True)
class HPASpec:
    """What a HorizontalPodAutoscaler's spec says, resolved (see `knative.autoscaler.hpa_spec`)."""

    metric: MetricTarget = DEFAULT_METRIC
    min_replicas: int = 1
    max_replicas: int = MAX_REPLICAS
    scale_up: ScalingRules = SCALE_UP
    scale_down: ScalingRules = SCALE_DOWN
    tolerance: float = TOLERANCE
    downscale_stabilization: float = DOWNSCALE_STABILIZATION

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ValueError(
                f"min_replicas {self.min_replicas} must be 1 or more (no HPA scales to zero)"
            )
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas}"
            )


@dataclass(frozen=True)
class HPADecision:
    """One `scale` pass: the replicas to run and what the HPA's status would show."""

    desired: int
    proposed: int | None  # the calculator's count before stabilization; None without a metric
    current_metric: float | None  # utilization (percent) or average value; None without a metric
    reason: str  # e.g. "SucceededRescale", "ScaleDownStabilized", "FailedGetResourceMetric"
    message: str = ""
    able_to_scale: bool = True
    scaling_active: bool = True
    limited: bool = False  # ScalingLimited: a bound or a rate policy held the count


@dataclass
class _Events:
    up: deque[tuple[float, int]] = field(default_factory=deque)  # (time, replicas added)
    down: deque[tuple[float, int]] = field(default_factory=deque)


class HorizontalAutoscaler:
    """One HPA's controller state: its recommendations and scale events over time."""

    def __init__(self, spec: HPASpec, clock: Callable[[], float]) -> None:
        self.spec = spec
        self._clock = clock
        self._recommendations: list[tuple[float, int]] = []  # (time, unstabilized proposal)
        self._events = _Events()

    def scale(
        self, current: int, pods: Sequence[PodSample], now: float | None = None
    ) -> HPADecision:
        """The replicas for a target now at `current` (its spec, not its ready count)."""
        now = self._clock() if now is None else now
        spec = self.spec
        if current > spec.max_replicas:
            return self._rescale(
                current,
                spec.max_replicas,
                now,
                "TooManyReplicas",
                "current number of replicas above max replicas",
            )
        if current < spec.min_replicas:
            return self._rescale(
                current,
                spec.min_replicas,
                now,
                "TooFewReplicas",
                "current number of replicas below min replicas",
            )
        try:
            proposal = replicas_for_metric(current, pods, spec.metric, spec.tolerance)
        except MetricError as exc:
            return HPADecision(
                current,
                None,
                None,
                "FailedGetResourceMetric",
                f"the HPA was unable to compute the replica count: {exc}",
                scaling_active=False,
            )
        stabilized, reason = self._stabilize(current, proposal.replicas, now)
        desired, limit_reason = self._rate_limited(current, stabilized, now)
        if desired != current:
            self._record_event(current, desired, now)
        message = (
            f"{spec.metric.resource} {proposal.current:g} against a target of {spec.metric.value:g}"
        )
        return HPADecision(
            desired,
            proposal.replicas,
            proposal.current,
            limit_reason or reason,
            message,
            limited=limit_reason is not None,
        )

    def _rescale(
        self, current: int, desired: int, now: float, reason: str, message: str
    ) -> HPADecision:
        self._record_event(current, desired, now)
        return HPADecision(desired, None, None, reason, message, limited=True)

    def _stabilize(self, current: int, proposed: int, now: float) -> tuple[int, str]:
        """`stabilizeRecommendationWithBehaviors`: bound by the windows' recommendations."""
        spec = self.spec
        up_window = spec.scale_up.stabilization_window or 0.0
        down_window = spec.scale_down.stabilization_window
        if down_window is None:
            down_window = spec.downscale_stabilization
        up_cutoff, down_cutoff = now - up_window, now - down_window
        up, down = proposed, proposed
        for time, recommendation in self._recommendations:
            if time > up_cutoff:
                up = min(up, recommendation)
            if time > down_cutoff:
                down = max(down, recommendation)
        # Recommendations older than both windows are dropped (the HPA reuses one slot).
        self._recommendations = [
            r for r in self._recommendations if r[0] > up_cutoff or r[0] > down_cutoff
        ]
        self._recommendations.append((now, proposed))
        stabilized = min(max(current, up), down)
        if stabilized < proposed:
            return stabilized, "ScaleUpStabilized"
        if stabilized > proposed:
            return stabilized, "ScaleDownStabilized"
        return stabilized, "ReadyForNewScale" if stabilized == current else "SucceededRescale"

    def _rate_limited(self, current: int, desired: int, now: float) -> tuple[int, str | None]:
        """`convertDesiredReplicasWithBehaviorRate`: the policies' limits and min/max."""
        spec = self.spec
        if desired > current:
            limit = max(self._limit(current, spec.scale_up, now, up=True), current)
            if spec.max_replicas <= limit:
                bound, reason = spec.max_replicas, "TooManyReplicas"
            else:
                bound, reason = limit, "ScaleUpLimit"
            return (bound, reason) if desired > bound else (desired, None)
        if desired < current:
            limit = min(self._limit(current, spec.scale_down, now, up=False), current)
            if spec.min_replicas >= limit:
                bound, reason = spec.min_replicas, "TooFewReplicas"
            else:
                bound, reason = limit, "ScaleDownLimit"
            return (bound, reason) if desired < bound else (desired, None)
        return desired, None

    def _limit(self, current: int, rules: ScalingRules, now: float, up: bool) -> int:
        """calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors."""
        if rules.select_policy == "Disabled":
            return current
        # "Max" picks the policy allowing the largest change: the highest limit up, the lowest down.
        larger = (rules.select_policy == "Max") == up
        pick = max if larger else min
        result: int | None = None
        for policy in rules.policies:
            added = sum(n for t, n in self._events.up if t > now - policy.period)
            deleted = sum(n for t, n in self._events.down if t > now - policy.period)
            start = current - added + deleted
            if policy.type == "Pods":
                proposed = start + policy.value if up else start - policy.value
            elif up:
                proposed = math.ceil(start * (1 + policy.value / 100))
            else:
                proposed = int(start * (1 - policy.value / 100))
            result = proposed if result is None else pick(result, proposed)
        return current if result is None else result

    def _record_event(self, current: int, desired: int, now: float) -> None:
        """`storeScaleEvent`, dropping events older than the longest policy period."""
        longest = max(
            (p.period for r in (self.spec.scale_up, self.spec.scale_down) for p in r.policies),
            default=0.0,
        )
        for events in (self._events.up, self._events.down):
            while events and events[0][0] <= now - longest:
                events.popleft()
        if desired > current:
            self._events.up.append((now, desired - current))
        elif desired < current:
            self._events.down.append((now, current - desired))
