"""The KPA decider's configuration: Knative's config-autoscaler defaults, target resolution,
validation, Go-style durations and the autoscaling annotations read by `from_annotations`.
config-autoscaler as a ConfigMap and `knserve up --autoscaler-config` are in
test_autoscaler_config.py.
"""

from __future__ import annotations

import pytest
from kpa_fixtures import P

from knserve.knative.autoscaler.kpa import AutoscalerConfig, parse_duration

# --- configuration ---------------------------------------------------------------------------


def test_defaults_are_knatives_config_autoscaler() -> None:
    cfg = AutoscalerConfig()
    assert cfg.metric == "concurrency"
    assert cfg.stable_window == 60.0
    assert cfg.panic_window == 6.0  # 10 % of 60 s
    assert cfg.panic_threshold_percentage == 200.0
    assert cfg.target_total == 100.0
    assert cfg.target_value == 70.0  # 100 × 70 %
    assert (cfg.max_scale_up_rate, cfg.max_scale_down_rate) == (1000.0, 2.0)
    assert (cfg.min_scale, cfg.max_scale, cfg.initial_scale, cfg.activation_scale) == (0, 0, 1, 1)
    assert cfg.scale_to_zero_grace_period == 30.0
    assert cfg.scale_to_zero_pod_retention_period == 0.0
    assert cfg.scale_down_delay == 0.0
    assert cfg.enable_scale_to_zero is True
    assert cfg.target_burst_capacity == 211.0
    assert cfg.tick_interval == 2.0


@pytest.mark.parametrize(
    ("config", "total", "value"),
    [
        ({}, 100.0, 70.0),
        ({"container_concurrency": 10}, 10.0, 7.0),
        ({"target": 50.0}, 50.0, 35.0),
        # Knative picks the smaller of target and containerConcurrency.
        ({"target": 50.0, "container_concurrency": 10}, 10.0, 7.0),
        ({"target": 5.0, "container_concurrency": 10}, 5.0, 3.5),
        ({"target": 10.0, "target_utilization_percentage": 50.0}, 10.0, 5.0),
        ({"metric": "rps"}, 200.0, 140.0),
        # containerConcurrency does not cap an rps target.
        ({"metric": "rps", "target": 50.0, "container_concurrency": 10}, 50.0, 35.0),
        # target × utilization never goes below 0.01.
        ({"target": 0.01, "target_utilization_percentage": 1.0}, 0.01, 0.01),
    ],
)
def test_target_resolution(config: dict[str, object], total: float, value: float) -> None:
    cfg = AutoscalerConfig(**config)  # type: ignore[arg-type]
    assert cfg.target_total == total
    assert cfg.target_value == pytest.approx(value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"metric": "cpu"}, "metric 'cpu' is not concurrency or rps"),
        ({"target": 0.0}, "target must be at least 0.01"),
        ({"container_concurrency": -1}, "container_concurrency must be 0 or more"),
        ({"rps_target_default": 0.0}, "default targets must be at least 0.01"),
        ({"target_utilization_percentage": 0.5}, "target utilization must be 1..100"),
        ({"stable_window": 5.0}, "stable_window must be 6s..1h"),
        ({"stable_window": 3601.0}, "stable_window must be 6s..1h"),
        ({"panic_window_percentage": 0.5}, "panic_window_percentage must be 1..100"),
        ({"panic_threshold_percentage": 100.0}, "panic threshold must be 110..1000"),
        ({"max_scale_up_rate": 1.0}, "scale rates must be > 1"),
        ({"max_scale_down_rate": 1.0}, "scale rates must be > 1"),
        ({"min_scale": -1}, "min_scale and max_scale must be >= 0"),
        ({"min_scale": 3, "max_scale": 2}, "min_scale > max_scale"),
        ({"initial_scale": 0}, "initial_scale must be >= 1 (0 needs allow_zero_initial_scale)"),
        ({"activation_scale": 0}, "activation_scale must be >= 1"),
        ({"scale_down_delay": -1.0}, "scale_down_delay must be 0..1h"),
        ({"scale_to_zero_grace_period": -1.0}, "scale-to-zero periods must be >= 0"),
        ({"target_burst_capacity": -2.0}, "target_burst_capacity must be >= 0 or -1"),
        ({"tick_interval": 0.0}, "tick_interval must be > 0"),
    ],
)
def test_config_validation(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        AutoscalerConfig(**config)  # type: ignore[arg-type]
    assert str(info.value) == f"autoscaler config: {message}"


def test_config_accepts_zero_initial_scale_when_allowed() -> None:
    assert AutoscalerConfig(initial_scale=0, allow_zero_initial_scale=True).initial_scale == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("60s", 60.0),
        ("1m30s", 90.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1m0.5s", 60.5),
        ("-5s", -5.0),
        ("+5s", 5.0),
        (" 6s ", 6.0),
        ("250us", 0.00025),
        ("100ns", 1e-7),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "60", "s", "5 s", "1d", "--5s", "5s3", "abc", "-"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_from_annotations_reads_every_key() -> None:
    annotations = {
        P + "metric": "rps",
        P + "min-scale": "1",
        P + "max-scale": "10",
        P + "initial-scale": "2",
        P + "activation-scale": "3",
        P + "target": "50",
        P + "target-utilization-percentage": "80",
        P + "window": "1m30s",
        P + "panic-window-percentage": "20",
        P + "panic-threshold-percentage": "300",
        P + "scale-down-delay": "2m",
        P + "scale-to-zero-pod-retention-period": "1.5s",
        P + "target-burst-capacity": "-1",
        P + "class": "kpa.autoscaling.knative.dev",  # not ours: ignored
        "serving.knative.dev/creator": "someone",  # other prefixes: ignored
    }
    base = AutoscalerConfig(scale_to_zero_grace_period=10.0)
    cfg = AutoscalerConfig.from_annotations(annotations, base, container_concurrency=4)
    assert cfg == AutoscalerConfig(
        metric="rps",
        min_scale=1,
        max_scale=10,
        initial_scale=2,
        activation_scale=3,
        target=50.0,
        target_utilization_percentage=80.0,
        stable_window=90.0,
        panic_window_percentage=20.0,
        panic_threshold_percentage=300.0,
        scale_down_delay=120.0,
        scale_to_zero_pod_retention_period=1.5,
        target_burst_capacity=-1.0,
        container_concurrency=4,
        scale_to_zero_grace_period=10.0,  # kept from base
    )
    assert cfg.panic_window == 18.0  # 20 % of 90 s
    assert cfg.target_value == 40.0  # rps target 50 × 80 %


def test_from_annotations_without_annotations_keeps_base() -> None:
    base = AutoscalerConfig(min_scale=2, stable_window=30.0)
    assert AutoscalerConfig.from_annotations({}, base, 0) == base
    assert AutoscalerConfig.from_annotations({}) == AutoscalerConfig()
    # containerConcurrency 10 and no target annotation: target 10, 7 per pod.
    assert AutoscalerConfig.from_annotations({}, base, 10).target_value == 7.0
    # No containerConcurrency given: the base's is kept; 0 means unlimited.
    with_cc = AutoscalerConfig(container_concurrency=10)
    assert AutoscalerConfig.from_annotations({}, with_cc).container_concurrency == 10
    assert AutoscalerConfig.from_annotations({}, with_cc, 0).target_total == 100.0


def test_from_annotations_zero_initial_scale_needs_the_global_switch() -> None:
    base = AutoscalerConfig(allow_zero_initial_scale=True)
    assert AutoscalerConfig.from_annotations({P + "initial-scale": "0"}, base).initial_scale == 0


def test_from_annotations_max_scale_zero_means_unbounded() -> None:
    cfg = AutoscalerConfig.from_annotations({P + "min-scale": "5", P + "max-scale": "0"})
    assert (cfg.min_scale, cfg.max_scale) == (5, 0)


# Which annotation values are refused, and with which message: Knative's webhook rules, in
# tests/knative/test_autoscaler_config.py (from_annotations and admission share them).
