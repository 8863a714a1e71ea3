"""Kubernetes' HPA replica calculator for one resource metric, as a pure function.

Follows kubernetes pkg/controller/podautoscaler/replica_calculator.go (`GetResourceReplicas` for
a Utilization target, `GetRawResourceReplicas`/`calcPlainMetricReplicas` for an AverageValue
target) and metrics/utilization.go:

- pods are grouped as the HPA groups them (`groupPods`): a replica not started yet (Pending) is
  unready; a started one without a sample is missing; for CPU only, a replica that is not ready
  (or whose sample window began before it became ready) is unready too;
- the usage ratio is the pods' total usage over their total requests, as a whole percentage (Go's
  integer division), over the target utilization; or, for an AverageValue target, the pods'
  average usage (integer division again) over the target value;
- within the tolerance (10 %) nothing changes; otherwise, with every pod measured and none
  unready, desired = ceil(ratio × measured pods);
- missing pods count as using 100 % of their request (or the target, when above 100 %) on a
  scale-down and 0 on a scale-up; unready pods count as 0 on a scale-up; if that brings the
  ratio within the tolerance, or turns the direction around, nothing changes.

A metric the HPA cannot compute (no pod measured, or a Utilization target on a replica without a
request) is a `MetricError`: the HPA keeps the replicas where they are and says why
(FailedGetResourceMetric). Usage and requests are plain numbers in one unit: millicores for
CPU, bytes for memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCE = 0.1  # kube-controller-manager's --horizontal-pod-autoscaler-tolerance


@dataclass(frozen=True)
class PodSample:
    """One replica as the HPA sees it: started (else Pending), ready, and its latest usage."""

    usage: float | None  # millicores or bytes; None when the replica has no sample (missing)
    request: float | None = None  # the container's request in the same unit; None when unset
    started: bool = True  # False while the replica's process is not running yet (Pending)
    ready: bool = True  # passes its readiness probe, and its sample window began after that


@dataclass(frozen=True)
class MetricTarget:
    """An HPA resource metric: `Utilization` (percent of the request) or `AverageValue`."""

    resource: str  # "cpu" or "memory"
    type: str  # "Utilization" or "AverageValue"
    value: float  # percent for Utilization; millicores or bytes for AverageValue


@dataclass(frozen=True)
class Proposal:
    """The calculator's answer: the replicas for this metric and the metric's current value."""

    replicas: int
    current: float  # utilization in percent, or the average value


class MetricError(ValueError):
    """The metric cannot be computed now; the HPA's FailedGetResourceMetric."""


def _within(ratio: float, tolerance: float) -> bool:
    return abs(1.0 - ratio) <= tolerance


def _ratio(
    usage: dict[int, float], requests: Sequence[float | None], target: MetricTarget
) -> tuple[float, float]:
    """(usage ratio, current value) over the pods in `usage` (metrics/utilization.go)."""
    if target.type == "Utilization":
        total_usage = total_request = 0
        for i, value in usage.items():
            request = requests[i]
            if request is None:  # calculatePodRequests: one missing request fails the metric
                raise MetricError(f"missing request for {target.resource}")
            total_usage += int(value)
            total_request += int(request)
        if total_request == 0:
            raise MetricError(f"no metrics returned matched known pods ({target.resource})")
        utilization = total_usage * 100 // total_request  # int64 maths, as the HPA does
        return utilization / target.value, float(utilization)
    average = sum(int(v) for v in usage.values()) // len(usage)
    return average / target.value, float(average)


def replicas_for_metric(
    current_replicas: int,
    pods: Sequence[PodSample],
    target: MetricTarget,
    tolerance: float = TOLERANCE,
) -> Proposal:
    """The replica count the HPA proposes for `target` (module docstring); raises MetricError."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    if target.value <= 0:
        raise MetricError(f"target {target.value} must be above 0")
    usage: dict[int, float] = {}
    unready: list[int] = []
    missing: list[int] = []
    for i, pod in enumerate(pods):
        if not pod.started:
            unready.append(i)
        elif pod.usage is None:
            missing.append(i)
        elif target.resource == "cpu" and not pod.ready:
            unready.append(i)  # CPU of a starting process says nothing about steady load
        else:
            usage[i] = pod.usage
    ready_count = len(usage)
    if not usage:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    requests = [pod.request for pod in pods]
    ratio, current = _ratio(usage, requests, target)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if _within(ratio, tolerance):
            return Proposal(current_replicas, current)
        return Proposal(math.ceil(ratio * ready_count), current)
    if missing:
        for i in missing:
            if ratio < 1.0:  # scale-down: missing pods as if at their request (or the target)
                if target.type == "Utilization":
                    fallback = max(100.0, target.value)
                    usage[i] = (requests[i] or 0) * fallback / 100
                else:
                    usage[i] = target.value
            elif ratio > 1.0:  # scale-up: as if idle
                usage[i] = 0.0
    if scale_up_with_unready:
        for i in unready:
            usage[i] = 0.0
    new_ratio, _ = _ratio(usage, requests, target)
    if _within(new_ratio, tolerance) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        # too small a change, or the missing and unready pods turned the direction around
        return Proposal(current_replicas, current)
    replicas = math.ceil(new_ratio * len(usage))
    if (new_ratio < 1.0 and replicas > current_replicas) or (
        new_ratio > 1.0 and replicas < current_replicas
    ):
        return Proposal(current_replicas, current)
    return Proposal(replicas, current)
