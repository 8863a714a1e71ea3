"""config-autoscaler, config-features and the autoscaling annotations as Knative reads them.

`from_annotations` (what the KPA decider runs with) reads Knative's legacy camelCase keys as
Knative does; `config_from_map` and `knserve up --autoscaler-config` take Knative's own
config-autoscaler ConfigMap and refuse what Knative's config validation refuses, with its message.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from plane_fixtures import LocalPlane, apply, echo_service

from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig, config_from_map
from knserve.knative.apiserver.autoscaling_annotations import KEYS
from knserve.knative.apiserver.features import features_from_map, is_enabled

P = "autoscaling.knative.dev/"

# Knative Serving's config/core/configmaps/autoscaler.yaml as it ships: every key lives in the
# `_example` block (the documented defaults), which Knative ignores (abridged here).
SHIPPED_CONFIG_AUTOSCALER = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-autoscaler
  namespace: knative-serving
  labels:
    app.kubernetes.io/component: autoscaler
    app.kubernetes.io/name: knative-serving
  annotations:
    knative.dev/example-checksum: "c727b3e8"
data:
  _example: |
    ################################
    #                              #
    #    EXAMPLE CONFIGURATION     #
    #                              #
    ################################
    # The Revision ContainerConcurrency field specifies the maximum number
    # of requests the Container can handle at once.
    container-concurrency-target-percentage: "70"
    container-concurrency-target-default: "100"
    requests-per-second-target-default: "200"
    target-burst-capacity: "211"
    stable-window: "60s"
    panic-window-percentage: "10.0"
    panic-threshold-percentage: "200.0"
    max-scale-up-rate: "1000.0"
    max-scale-down-rate: "2.0"
    enable-scale-to-zero: "true"
    scale-to-zero-grace-period: "30s"
    scale-to-zero-pod-retention-period: "0s"
    pod-autoscaler-class: "kpa.autoscaling.knative.dev"
    activator-capacity: "100.0"
    initial-scale: "1"
    allow-zero-initial-scale: "false"
    min-scale: "0"
    max-scale: "0"
    scale-down-delay: "0s"
    max-scale-limit: "0"
"""

# Every key Knative's NewConfigFromMap reads, set away from its default.
EVERY_KEY = {
    "container-concurrency-target-percentage": "0.8",
    "container-concurrency-target-default": "50",
    "requests-per-second-target-default": "150",
    "target-burst-capacity": "-1",
    "stable-window": "2m",
    "panic-window-percentage": "20.0",
    "panic-threshold-percentage": "300.0",
    "max-scale-up-rate": "100.0",
    "max-scale-down-rate": "4.0",
    "enable-scale-to-zero": "False",
    "scale-to-zero-grace-period": "1s",
    "scale-to-zero-pod-retention-period": "1m30s",
    "pod-autoscaler-class": "kpa.autoscaling.knative.dev",
    "activator-capacity": "50",
    "initial-scale": "0",
    "allow-zero-initial-scale": "t",
    "min-scale": "1",
    "max-scale": "8",
    "scale-down-delay": "15s",
    "max-scale-limit": "10",
}


def configmap(data: dict[str, str]) -> dict[str, Any]:
    shipped = yaml.safe_load(SHIPPED_CONFIG_AUTOSCALER)
    shipped["data"].update(data)
    return shipped  # type: ignore[no-any-return]


def test_the_shipped_configmap_is_knatives_defaults() -> None:
    data = yaml.safe_load(SHIPPED_CONFIG_AUTOSCALER)["data"]
    assert config_from_map(data) == AutoscalerConfig()


def test_every_knative_key_is_read() -> None:
    assert config_from_map(EVERY_KEY) == AutoscalerConfig(
        target_utilization_percentage=80.0,
        container_concurrency_target_default=50.0,
        rps_target_default=150.0,
        target_burst_capacity=-1.0,
        stable_window=120.0,
        panic_window_percentage=20.0,
        panic_threshold_percentage=300.0,
        max_scale_up_rate=100.0,
        max_scale_down_rate=4.0,
        enable_scale_to_zero=False,
        scale_to_zero_grace_period=1.0,
        scale_to_zero_pod_retention_period=90.0,
        activator_capacity=50.0,
        initial_scale=0,
        allow_zero_initial_scale=True,
        min_scale=1,
        max_scale=8,
        scale_down_delay=15.0,
        max_scale_limit=10,
    )
    # Knative takes the target percentage as a fraction or a percentage (0.7 and 70 alike).
    as_percent = config_from_map({"container-concurrency-target-percentage": "70"})
    assert as_percent.target_utilization_percentage == 70.0
    # The plain mapping form may give YAML's own types.
    native = config_from_map({"stable-window": 30, "enable-scale-to-zero": False, "max-scale": 3})
    assert (native.stable_window, native.enable_scale_to_zero, native.max_scale) == (30.0, False, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"scale-to-zero-grace-period": "0s"},
            "scale-to-zero-grace-period must be positive, was: 0s",
        ),
        (
            {"scale-to-zero-grace-period": "-5s"},
            "scale-to-zero-grace-period must be positive, was: -5s",
        ),
        ({"stable-window": "5s"}, "stable-window = 5s, must be in [6s; 1h0m0s] range"),
        ({"stable-window": "2h"}, "stable-window = 2h0m0s, must be in [6s; 1h0m0s] range"),
        (
            {"stable-window": "6500ms"},
            "stable-window = 6.5s, must be specified with at most second precision",
        ),
        ({"scale-down-delay": "-1s"}, "scale-down-delay cannot be negative, was: -1s"),
        (
            {"scale-down-delay": "1.5s"},
            "scale-down-delay = 1.5s, must be specified with at most second precision",
        ),
        (
            {"scale-to-zero-pod-retention-period": "-1m"},
            "scale-to-zero-pod-retention-period cannot be negative, was: -1m0s",
        ),
        (
            {"target-burst-capacity": "-2"},
            "target-burst-capacity must be either non-negative or -1 (for unlimited), was: -2.000000",
        ),
        (
            {"container-concurrency-target-percentage": "0"},
            "container-concurrency-target-percentage = 0.000000 is outside of valid range of (0, 100]",
        ),
        (
            {"container-concurrency-target-percentage": "101"},
            "container-concurrency-target-percentage = 1.010000 is outside of valid range of (0, 100]",
        ),
        (
            {
                "container-concurrency-target-default": "0.01",
                "container-concurrency-target-percentage": "50",
            },
            "container-concurrency-target-percentage and container-concurrency-target-default yield "
            "target concurrency of 0.005, can't be less than 0.01",
        ),
        (
            {"requests-per-second-target-default": "0"},
            "requests-per-second-target-default must be at least 0.01, was: 0",
        ),
        ({"activator-capacity": "0.5"}, "activator-capacity = 0.5, must be at least 1"),
        ({"max-scale-up-rate": "1"}, "max-scale-up-rate = 1, must be greater than 1.0"),
        ({"max-scale-down-rate": "0.5"}, "max-scale-down-rate = 0.5, must be greater than 1.0"),
        (
            {"panic-window-percentage": "0.5"},
            "panic-window-percentage = 0.5, must be in [1, 100] interval",
        ),
        (
            {"initial-scale": "0"},
            "initial-scale = 0, must be at least 0 (or at least 1 when allow-zero-initial-scale is false)",
        ),
        ({"min-scale": "-1"}, "min-scale = -1, must be at least 0"),
        ({"max-scale": "-1"}, "max-scale = -1, must be in [0, max-scale-limit(0)] range"),
        ({"max-scale-limit": "10"}, "max-scale = 0, must be in [1, max-scale-limit(10)] range"),
        (
            {"max-scale-limit": "10", "max-scale": "11"},
            "max-scale = 11, must be in [1, max-scale-limit(10)] range",
        ),
        ({"min-scale": "3", "max-scale": "2"}, "min-scale (3) must be less than max-scale (2)"),
        (
            {"pod-autoscaler-class": "keda.autoscaling.example.com"},
            "pod-autoscaler-class 'keda.autoscaling.example.com': the local plane scales with Knative's KPA or HPA",
        ),
        (
            {"enable-scale-to-zero": "maybe"},
            "failed to parse \"enable-scale-to-zero\": 'maybe' is not a boolean",
        ),
        (
            {"initial-scale": "1.5"},
            "failed to parse \"initial-scale\": '1.5' is not a whole number",
        ),
        ({"stable-window": "60"}, 'failed to parse "stable-window": "60" is not a duration'),
        (
            {"panic-window-percentage": "ten"},
            "failed to parse \"panic-window-percentage\": 'ten' is not a number",
        ),
        ({"stable-windw": "60s"}, "unknown key 'stable-windw'; known keys: activator-capacity, "),
    ],
)
def test_what_knatives_config_validation_refuses_is_refused_with_its_message(
    data: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        config_from_map(data)
    assert str(refused.value).startswith(f"config-autoscaler: {message}"), str(refused.value)


def test_a_short_grace_period_is_accepted_as_knative_accepts_it() -> None:
    # Knative has required only a positive grace period since knative/serving#10754 (v0.21).
    assert config_from_map({"scale-to-zero-grace-period": "1s"}).scale_to_zero_grace_period == 1.0


LEGACY = [(name, keys[1]) for name, keys in KEYS.items() if len(keys) > 1]
VALUES = {
    "min-scale": "2",
    "max-scale": "5",
    "initial-scale": "3",
    "target-utilization-percentage": "80",
    "target-burst-capacity": "-1",
    "panic-window-percentage": "20",
    "panic-threshold-percentage": "300",
    "scale-down-delay": "30s",
    "scale-to-zero-pod-retention-period": "10s",
    "metric-aggregation-algorithm": "linear",
}


def test_knatives_legacy_keys_are_the_ones_register_go_lists() -> None:
    assert {legacy for _, legacy in LEGACY} == {
        "minScale",
        "maxScale",
        "initialScale",
        "targetUtilizationPercentage",
        "targetBurstCapacity",
        "panicWindowPercentage",
        "panicThresholdPercentage",
        "scaleDownDelay",
        "scaleToZeroPodRetentionPeriod",
        "metricAggregationAlgorithm",
    }


@pytest.mark.parametrize(("name", "legacy"), LEGACY)
def test_a_legacy_key_configures_what_its_kebab_case_key_does(name: str, legacy: str) -> None:
    kebab = AutoscalerConfig.from_annotations({P + name: VALUES[name]})
    assert AutoscalerConfig.from_annotations({P + legacy: VALUES[name]}) == kebab
    if name != "metric-aggregation-algorithm":  # checked, but the KPA here has one algorithm
        assert kebab != AutoscalerConfig()


def test_the_kebab_case_key_wins_when_both_are_set() -> None:
    both = {P + "min-scale": "1", P + "minScale": "4", P + "maxScale": "6"}
    config = AutoscalerConfig.from_annotations(both)
    assert (config.min_scale, config.max_scale) == (1, 6)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({P + "window": "5s"}, f"expected 6s <= 5s <= 1h0m0s: metadata.annotations.{P}window"),
        (
            {P + "minScale": "-1"},
            f"expected 0 <= -1 <= 2147483647: metadata.annotations.{P}minScale",
        ),
        ({P + "target": "nan"}, f"invalid value: nan: metadata.annotations.{P}target"),
        ({P + "metric": "cpu"}, f"invalid value: cpu: metadata.annotations.{P}metric"),
    ],
)
def test_from_annotations_refuses_what_the_webhook_refuses(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        AutoscalerConfig.from_annotations(annotations)
    assert str(refused.value).startswith(message)
    with pytest.raises(ValueError, match="containerConcurrency -1 must be 0 or more"):
        AutoscalerConfig.from_annotations({}, None, -1)


def test_what_depends_on_config_autoscaler_resolves_as_knatives_runtime_does() -> None:
    # initial-scale 0 where config-autoscaler does not allow it: the config's initial scale
    # (Knative's GetInitialScale); admission refuses it, this covers a config changed since.
    base = AutoscalerConfig(initial_scale=2)
    assert AutoscalerConfig.from_annotations({P + "initial-scale": "0"}, base).initial_scale == 2
    allowed = dataclasses.replace(base, allow_zero_initial_scale=True)
    assert AutoscalerConfig.from_annotations({P + "initialScale": "0"}, allowed).initial_scale == 0
    # min-scale from the annotation above config-autoscaler's max-scale: max wins (applyBounds)
    capped = AutoscalerConfig.from_annotations({P + "minScale": "5"}, AutoscalerConfig(max_scale=3))
    assert (capped.min_scale, capped.max_scale) == (3, 3)


def test_features_are_knatives_flags_with_their_defaults() -> None:
    defaults = features_from_map({"_example": "# every flag, documented"})
    assert defaults["tag-header-based-routing"] == "Disabled"
    assert defaults["multi-container"] == "Enabled"
    assert not is_enabled(defaults, "tag-header-based-routing")
    on = features_from_map(
        {"tag-header-based-routing": "enabled", "secure-pod-defaults": "allowrootbounded"}
    )
    assert on["tag-header-based-routing"] == "Enabled" and is_enabled(
        on, "tag-header-based-routing"
    )
    assert on["secure-pod-defaults"] == "AllowRootBounded"
    with pytest.raises(
        ValueError, match="tag-header-based-routing is 'on'; use one of enabled, allowed, disabled"
    ):
        features_from_map({"tag-header-based-routing": "on"})
    with pytest.raises(ValueError, match="config-features: unknown key 'tag-header-routing'"):
        features_from_map({"tag-header-routing": "enabled"})


def _up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "knserve.knative.cli",
            "up",
            "--data-dir",
            str(tmp_path / "d"),
            "--api-port",
            "9",
            "--port",
            "9",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("flag", "document", "message"),
    [
        (
            "--autoscaler-config",
            configmap({"scale-to-zero-grace-period": "0s"}),
            "config-autoscaler: scale-to-zero-grace-period must be positive, was: 0s",
        ),
        (
            "--autoscaler-config",
            {"stable-window": "2h"},
            "config-autoscaler: stable-window = 2h0m0s, must be in [6s; 1h0m0s] range",
        ),
        (
            "--features-config",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config-features"},
                "data": {"tag-header-based-routing": "yes"},
            },
            "config-features: tag-header-based-routing is 'yes'; use one of enabled, allowed, disabled",
        ),
        ("--autoscaler-config", ["not", "a", "mapping"], "write the config-autoscaler ConfigMap"),
    ],
)
def test_knserve_up_refuses_a_config_knative_refuses_with_one_line_and_status_2(
    tmp_path: Path, flag: str, document: Any, message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    result = _up(tmp_path, flag, str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert not (tmp_path / "d" / "plane.json").exists()  # nothing was started


@pytest.mark.slow
def test_knserve_up_runs_with_knatives_configmaps_and_honours_legacy_min_scale(
    spawn: Any, tmp_path: Path
) -> None:
    autoscaler = tmp_path / "config-autoscaler.yaml"
    autoscaler.write_text(SHIPPED_CONFIG_AUTOSCALER)
    features = tmp_path / "config-features.yaml"
    features.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config-features", "namespace": "knative-serving"},
                "data": {"_example": "...", "tag-header-based-routing": "Enabled"},
            }
        )
    )
    plane = LocalPlane(
        spawn,
        tmp_path / "plane",
        ["--autoscaler-config", str(autoscaler), "--features-config", str(features)],
    )
    try:
        # Knative's legacy spelling: two replicas, where the default initial scale would give one.
        legacy = echo_service(metadata={"annotations": {P + "minScale": "2"}})
        apply(plane, tmp_path, legacy)
        plane.wait_ready("services", "echo")
        plane.wait_for(
            "revisions", "echo-00001", lambda r: (r.get("status") or {}).get("actualReplicas") == 2
        )
    finally:
        plane.close()
