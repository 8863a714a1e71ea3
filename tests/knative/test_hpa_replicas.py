"""Kubernetes' HPA replica calculator (knative/autoscaler/hpa_replicas.py), case by case."""

from __future__ import annotations

import pytest

from knserve.knative.autoscaler.hpa_replicas import (
    MetricError,
    MetricTarget,
    PodSample,
    replicas_for_metric,
)

CPU80 = MetricTarget("cpu", "Utilization", 80)
MIB = 1024 * 1024


def cpu(*millicores: float | None, request: float = 1000) -> list[PodSample]:
    return [PodSample(m, request) for m in millicores]


def test_desired_is_ceil_of_current_times_utilization_over_target() -> None:
    # 3 replicas at 160 % of a one-core request against 80 %: twice as many
    assert replicas_for_metric(3, cpu(1600, 1600, 1600), CPU80).replicas == 6
    # 1 replica at 250 %: ceil(1 × 250 / 80) = 4
    proposal = replicas_for_metric(1, cpu(2500), CPU80)
    assert (proposal.replicas, proposal.current) == (4, 250)
    # 4 replicas at 20 %: ceil(4 × 20 / 80) = 1
    assert replicas_for_metric(4, cpu(200, 200, 200, 200), CPU80).replicas == 1


def test_within_the_ten_percent_tolerance_nothing_changes() -> None:
    # 87 % / 80 % = 1.0875, inside 1 ± 0.1: stays at 5 although ceil(5 × 1.0875) = 6
    assert replicas_for_metric(5, cpu(870, 870, 870, 870, 870), CPU80).replicas == 5
    # 89 % / 80 % = 1.1125: outside, scales
    assert replicas_for_metric(5, cpu(890, 890, 890, 890, 890), CPU80).replicas == 6
    # 73 % / 80 % = 0.9125: inside on the way down too
    assert replicas_for_metric(5, cpu(730, 730, 730, 730, 730), CPU80).replicas == 5
    # a wider tolerance holds more
    assert replicas_for_metric(5, cpu(890, 890, 890, 890, 890), CPU80, tolerance=0.2).replicas == 5


def test_utilization_is_a_whole_percentage_of_the_summed_requests() -> None:
    # (1000 + 500) × 100 // (1000 + 2000) = 50 %: usage over requests summed, not averaged
    pods = [PodSample(1000, 1000), PodSample(500, 2000)]
    assert replicas_for_metric(2, pods, MetricTarget("cpu", "Utilization", 25)).current == 50
    # 89.9 % truncates to 89
    assert replicas_for_metric(1, cpu(899), CPU80).current == 89


def test_a_missing_pod_counts_as_full_request_on_the_way_down_and_idle_on_the_way_up() -> None:
    # down: 2 pods at 20 %, one missing counted at 100 %: (200+200+1000)/3000 = 46 % → 0.58,
    # ceil(0.58 × 3) = 2 (without the missing pod it would have been ceil(0.25 × 2) = 1)
    assert replicas_for_metric(3, cpu(200, 200, None), CPU80).replicas == 2
    # up: 2 pods at 200 %, one missing counted at 0: 400/3 = 133 % → ceil(1.66 × 3) = 5
    assert replicas_for_metric(3, cpu(2000, 2000, None), CPU80).replicas == 5
    # a target above 100 %: missing pods count at the target on the way down
    high = MetricTarget("cpu", "Utilization", 150)
    # 2 × 50 % + 150 % = 250 / 3 = 83 % → 0.55 → ceil(0.55 × 3) = 2
    assert replicas_for_metric(3, cpu(500, 500, None), high).replicas == 2


def test_missing_pods_that_would_turn_the_direction_around_keep_the_count() -> None:
    # 1 pod at 90 % (ratio 1.125, up), 2 missing counted at 0: 30 % → down: keep 3
    assert replicas_for_metric(3, cpu(900, None, None), CPU80).replicas == 3
    # 1 pod at 60 % (0.75, down), 3 missing at 100 %: (600 + 3000)/4000 = 90 % → up: keep 4
    assert replicas_for_metric(4, cpu(600, None, None, None), CPU80).replicas == 4


def test_unready_cpu_pods_are_left_out_and_count_as_idle_only_on_a_scale_up() -> None:
    starting = PodSample(3000, 1000, ready=False)  # a busy start-up says nothing about load
    # up: 1 ready pod at 200 % → ratio 2.5; the unready one counted at 0 → 100 % → 1.25,
    # ceil(1.25 × 2) = 3
    assert replicas_for_metric(2, [PodSample(2000, 1000), starting], CPU80).replicas == 3
    # down: the unready pod is left out; 1 ready pod at 20 % → ceil(0.25 × 1) = 1
    assert replicas_for_metric(2, [PodSample(200, 1000), starting], CPU80).replicas == 1
    # a pod not started yet (Pending) is unready for any resource
    pending = PodSample(None, 1000, started=False, ready=False)
    assert replicas_for_metric(2, [PodSample(2000, 1000), pending], CPU80).replicas == 3


def test_memory_counts_pods_that_are_not_ready_yet() -> None:
    target = MetricTarget("memory", "AverageValue", 100 * MIB)
    pods = [PodSample(300 * MIB), PodSample(100 * MIB, ready=False)]
    # the average of both (200 MiB) over 100 MiB: ceil(2 × 2) = 4
    proposal = replicas_for_metric(2, pods, target)
    assert (proposal.replicas, proposal.current) == (4, 200 * MIB)


def test_a_memory_average_value_target() -> None:
    target = MetricTarget("memory", "AverageValue", 64 * MIB)
    assert replicas_for_metric(1, [PodSample(200 * MIB)], target).replicas == 4
    assert replicas_for_metric(4, [PodSample(20 * MIB)] * 4, target).replicas == 2
    # within tolerance: 68 MiB / 64 MiB = 1.06
    assert replicas_for_metric(3, [PodSample(68 * MIB)] * 3, target).replicas == 3
    # missing on the way down counts at the target: (10 + 10 + 64) / 3 = 28 → 0.4375 → 2
    down = [PodSample(10 * MIB), PodSample(10 * MIB), PodSample(None)]
    assert replicas_for_metric(3, down, target).replicas == 2


def test_a_memory_utilization_target_is_a_share_of_the_request() -> None:
    target = MetricTarget("memory", "Utilization", 50)
    pods = [PodSample(400 * MIB, 512 * MIB)]  # 78 % of 512 MiB
    assert replicas_for_metric(1, pods, target).replicas == 2


def test_what_the_hpa_cannot_compute_is_a_metric_error() -> None:
    with pytest.raises(MetricError, match="no pods"):
        replicas_for_metric(1, [], CPU80)
    with pytest.raises(MetricError, match="did not receive metrics"):
        replicas_for_metric(2, cpu(None, None), CPU80)
    with pytest.raises(MetricError, match="did not receive metrics"):
        replicas_for_metric(1, [PodSample(500, 1000, ready=False)], CPU80)
    with pytest.raises(MetricError, match="missing request for memory"):
        replicas_for_metric(1, [PodSample(MIB)], MetricTarget("memory", "Utilization", 50))
