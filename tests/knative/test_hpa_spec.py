"""Knative's HPA class: annotations → the HPA (knative/autoscaler/hpa_spec.py), admission, status."""

from __future__ import annotations

import pytest

from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig, config_from_map
from knserve.knative.apiserver.autoscaling_annotations import annotation_errors
from knserve.knative.autoscaler.hpa import DEFAULT_METRIC, MAX_REPLICAS
from knserve.knative.autoscaler.hpa_replicas import MetricTarget, PodSample
from knserve.knative.autoscaler.hpa_scaler import HPAScaler
from knserve.knative.autoscaler.hpa_spec import hpa_spec, is_hpa_class

A = "autoscaling.knative.dev/"
HPA = {A + "class": "hpa.autoscaling.knative.dev"}
MIB = 1024 * 1024


def test_the_hpa_class_with_metric_cpu_is_configured_without_error() -> None:
    # Before the HPA class was honoured, this raised "metric 'cpu' is not concurrency or rps"
    # in the multiscaler and every reconcile of the Service failed.
    annotations = {**HPA, A + "metric": "cpu", A + "target": "50", A + "max-scale": "3"}
    config = AutoscalerConfig.from_annotations(annotations, AutoscalerConfig())
    assert config.metric == "concurrency" and config.max_scale == 3
    assert is_hpa_class(annotations, config)
    spec = hpa_spec(annotations, config)
    assert spec.metric == MetricTarget("cpu", "Utilization", 50)
    assert (spec.min_replicas, spec.max_replicas) == (1, 3)


def test_knatives_make_hpa_mapping() -> None:
    base = AutoscalerConfig()
    # a fractional cpu target rounds up; memory targets are MiB per replica
    cpu = hpa_spec({**HPA, A + "metric": "cpu", A + "target": "40.2"}, base)
    assert cpu.metric == MetricTarget("cpu", "Utilization", 41)
    memory = hpa_spec({**HPA, A + "metric": "memory", A + "target": "128"}, base)
    assert memory.metric == MetricTarget("memory", "AverageValue", 128 * MIB)
    # no target: Kubernetes' default metric, 80 % CPU, whatever the metric annotation says
    assert hpa_spec({**HPA, A + "metric": "memory"}, base).metric == DEFAULT_METRIC
    assert hpa_spec(HPA, base).metric == DEFAULT_METRIC
    # min-scale 0 is min 1 (no HPA scales to zero); max-scale 0 is unbounded
    spec = hpa_spec({**HPA, A + "min-scale": "0", A + "max-scale": "0"}, base)
    assert (spec.min_replicas, spec.max_replicas) == (1, MAX_REPLICAS)
    assert hpa_spec({**HPA, A + "min-scale": "2"}, base).min_replicas == 2
    # the window stabilizes both directions; without it, scale-down uses the controller's
    windowed = hpa_spec({**HPA, A + "window": "20s"}, base)
    assert windowed.scale_up.stabilization_window == windowed.scale_down.stabilization_window == 20
    plain = hpa_spec(
        HPA, config_from_map({"horizontal-pod-autoscaler-downscale-stabilization": "6s"})
    )
    assert plain.scale_down.stabilization_window is None
    assert plain.downscale_stabilization == 6
    assert plain.scale_up.stabilization_window == 0
    assert AutoscalerConfig().hpa_downscale_stabilization == 300


def test_the_class_comes_from_config_autoscaler_when_not_annotated() -> None:
    config = config_from_map({"pod-autoscaler-class": "hpa.autoscaling.knative.dev"})
    assert is_hpa_class({}, config)
    assert not is_hpa_class({}, AutoscalerConfig())
    with pytest.raises(ValueError, match="KPA or HPA"):
        config_from_map({"pod-autoscaler-class": "other.autoscaling.knative.dev"})


def test_admission_takes_cpu_and_memory_for_the_hpa_and_refuses_custom_metrics_locally() -> None:
    path = "spec.template.metadata.annotations"
    config = AutoscalerConfig()
    for metric in ("cpu", "memory"):
        assert annotation_errors({**HPA, A + "metric": metric}, config, path) == []
    errors = annotation_errors({**HPA, A + "metric": "requests-per-gpu"}, config, path)
    assert errors == [
        f"invalid value: requests-per-gpu: {path}.{A}metric (the local plane's HPA scales on cpu "
        "or memory; custom metrics need a cluster)"
    ]
    # a cluster's HPA may have a metrics adapter: no config-autoscaler, no local refusal
    assert annotation_errors({**HPA, A + "metric": "requests-per-gpu"}, None, path) == []
    # the KPA still refuses cpu
    assert annotation_errors({A + "metric": "cpu"}, config, path) != []
    with pytest.raises(ValueError, match="cpu or memory"):
        hpa_spec({**HPA, A + "metric": "requests-per-gpu"}, config)


def test_the_pod_autoscaler_of_an_hpa_revision_is_always_active_and_never_at_zero() -> None:
    now = [0.0]
    scaler = HPAScaler(hpa_spec({**HPA, A + "target": "50"}, AutoscalerConfig()), lambda: now[0])
    decision = scaler.observe(0)
    assert (decision.desired_pods, decision.active, decision.initialized) == (1, "True", False)
    assert not decision.activator_in_path
    scaler.pods = [PodSample(None)]  # the first sample has no CPU rate yet
    decision = scaler.scale(1)
    assert (decision.desired_pods, decision.reason, decision.initialized) == (
        1,
        "FailedGetResourceMetric",
        True,
    )
    scaler.pods = [PodSample(1000, 1000)]  # one core busy against 50 %
    now[0] = 15
    assert scaler.scale(1).desired_pods == 2
    assert scaler.last is not None and scaler.last.current_metric == 100
    scaler.pods = [PodSample(0, 1000)] * 2
    now[0] = 1000  # long past the 300 s scale-down window
    decision = scaler.scale(2)
    assert (decision.desired_pods, decision.stable_value) == (1, 0)  # idle: one, not zero
    # initial-scale within the bounds
    assert HPAScaler(hpa_spec(HPA, AutoscalerConfig()), lambda: 0, initial_scale=3).replicas == 3
