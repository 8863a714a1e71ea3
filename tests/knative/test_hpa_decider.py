"""Kubernetes' HPA controller over time (knative/autoscaler/hpa.py), with an injected clock."""

from __future__ import annotations

import dataclasses

import pytest

from knserve.knative.autoscaler.hpa import (
    SCALE_DOWN,
    SCALE_UP,
    HorizontalAutoscaler,
    HPASpec,
    ScalingPolicy,
    ScalingRules,
)
from knserve.knative.autoscaler.hpa_replicas import MetricTarget, PodSample


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def busy(replicas: int, millicores: float) -> list[PodSample]:
    return [PodSample(millicores, 1000)] * replicas


def hpa(clock: Clock, **spec: object) -> HorizontalAutoscaler:
    fields = {"metric": MetricTarget("cpu", "Utilization", 50), "max_replicas": 3, **spec}
    return HorizontalAutoscaler(HPASpec(**fields), clock)  # type: ignore[arg-type]


def test_a_cpu_burning_load_scales_1_to_3_and_back_after_the_stabilization_window() -> None:
    clock = Clock()
    scaler = hpa(clock, downscale_stabilization=30.0)
    replicas = 1
    # one replica burning a core against a 50 % target: wants 2, then 4 capped at max 3
    decision = scaler.scale(replicas, busy(1, 1000))
    assert (decision.desired, decision.proposed, decision.current_metric) == (2, 2, 100)
    replicas = decision.desired
    clock.now += 15
    decision = scaler.scale(replicas, busy(2, 1000))
    assert (decision.desired, decision.reason, decision.limited) == (3, "TooManyReplicas", True)
    replicas = decision.desired
    # the load stops: the proposal drops to 0 at once; the replicas stay until the highest
    # recommendation (4, at t=1015) has left the 30 s window
    clock.now += 15
    decision = scaler.scale(replicas, busy(3, 0))
    assert (decision.desired, decision.proposed, decision.reason) == (3, 0, "ScaleDownStabilized")
    while clock.now < 1044:
        clock.now += 1
        assert scaler.scale(replicas, busy(3, 0)).desired == 3
    clock.now = 1045.0
    decision = scaler.scale(replicas, busy(3, 0))
    assert (decision.desired, decision.reason) == (1, "TooFewReplicas")  # min-bounded, not 0


def test_scale_down_takes_the_highest_recommendation_within_the_window() -> None:
    clock = Clock()
    scaler = hpa(clock, max_replicas=10, downscale_stabilization=60.0)
    assert scaler.scale(4, busy(4, 1000)).desired == 8  # 100 % against 50 %
    clock.now += 10
    decision = scaler.scale(8, busy(8, 250))  # wants 4; 8 is in the window
    assert (decision.desired, decision.proposed, decision.reason) == (8, 4, "ScaleDownStabilized")
    clock.now += 10
    assert scaler.scale(8, busy(8, 125)).desired == 8  # wants 2
    clock.now = 1060.5  # 8 (t=1000) has left the window, 4 (t=1010) has not
    assert scaler.scale(8, busy(8, 125)).desired == 4
    clock.now = 1070.5  # only the 2s remain
    assert scaler.scale(4, busy(4, 125)).desired == 2


def test_scale_up_is_limited_to_4_pods_or_100_percent_per_15_seconds() -> None:
    clock = Clock()
    scaler = hpa(clock, max_replicas=100)
    # 1 replica at 1000 %: wants 20; the Pods policy allows 1 + 4 = 5, Percent 2: the larger
    decision = scaler.scale(1, busy(1, 10000))
    assert (decision.desired, decision.reason) == (5, "ScaleUpLimit")
    clock.now += 5
    # within the period the added 4 count: the period started at 1, the limit is still 5
    assert scaler.scale(5, busy(5, 10000)).desired == 5
    clock.now += 11
    # a new period: 5 + 4 = 9 or 5 × 2 = 10, whichever is more
    assert scaler.scale(5, busy(5, 10000)).desired == 10


def test_a_disabled_or_min_select_policy() -> None:
    clock = Clock()
    frozen = dataclasses.replace(SCALE_UP, select_policy="Disabled")
    assert hpa(clock, max_replicas=10, scale_up=frozen).scale(2, busy(2, 2000)).desired == 2
    cautious = dataclasses.replace(SCALE_UP, select_policy="Min")
    # Min: the smaller of +4 pods (6) and +100 % (4)
    assert hpa(clock, max_replicas=10, scale_up=cautious).scale(2, busy(2, 2000)).desired == 4
    slow_down = ScalingRules(0.0, (ScalingPolicy("Pods", 1, 60.0),))
    scaler = hpa(clock, max_replicas=10, scale_down=slow_down)
    assert scaler.scale(5, busy(5, 0)).desired == 4  # one pod a minute
    clock.now += 30
    assert scaler.scale(4, busy(4, 0)).desired == 4
    clock.now += 31
    assert scaler.scale(4, busy(4, 0)).desired == 3


def test_min_and_max_bound_the_count_before_any_metric_is_read() -> None:
    clock = Clock()
    scaler = hpa(clock, min_replicas=2, max_replicas=4)
    decision = scaler.scale(6, [])
    assert (decision.desired, decision.reason) == (4, "TooManyReplicas")
    decision = scaler.scale(1, [])
    assert (decision.desired, decision.reason) == (2, "TooFewReplicas")
    # idle at min: stays at min, never zero
    assert scaler.scale(2, busy(2, 0)).desired == 2


def test_a_metric_it_cannot_compute_keeps_the_replicas() -> None:
    clock = Clock()
    scaler = hpa(clock)
    decision = scaler.scale(2, [PodSample(None, 1000), PodSample(None, 1000)])
    assert (decision.desired, decision.reason, decision.scaling_active) == (
        2,
        "FailedGetResourceMetric",
        False,
    )
    assert "did not receive metrics" in decision.message


def test_a_scale_up_stabilization_window_takes_the_lowest_recent_recommendation() -> None:
    clock = Clock()
    up = dataclasses.replace(SCALE_UP, stabilization_window=6.0)
    down = dataclasses.replace(SCALE_DOWN, stabilization_window=6.0)
    scaler = hpa(clock, scale_up=up, scale_down=down)
    assert scaler.scale(1, busy(1, 0)).desired == 1
    clock.now += 1
    decision = scaler.scale(1, busy(1, 1000))  # wants 2, but 1 was recommended 1 s ago
    assert (decision.desired, decision.reason) == (1, "ScaleUpStabilized")
    clock.now += 6
    assert scaler.scale(1, busy(1, 1000)).desired == 2


def test_a_memory_target_scales_on_the_average_resident_set() -> None:
    mib = 1024 * 1024
    clock = Clock()
    scaler = hpa(
        clock, metric=MetricTarget("memory", "AverageValue", 100 * mib), downscale_stabilization=0.0
    )
    assert scaler.scale(1, [PodSample(250 * mib)]).desired == 3
    # memory does not fall when load does in most servers; when it does, it scales down
    assert scaler.scale(3, [PodSample(40 * mib)] * 3).desired == 2


def test_the_spec_refuses_what_an_hpa_cannot_be() -> None:
    with pytest.raises(ValueError, match="no HPA scales to zero"):
        HPASpec(min_replicas=0)
    with pytest.raises(ValueError, match="below min_replicas"):
        HPASpec(min_replicas=3, max_replicas=2)
