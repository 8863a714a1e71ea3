"""Knative's autoscaling configuration: config-autoscaler and the `autoscaling.knative.dev/*` annotations.

`AutoscalerConfig` is config-autoscaler resolved for one revision; `config_from_map` reads the
ConfigMap's keys and `AutoscalerConfig.from_annotations` overlays a revision's annotations. Pure:
no I/O, so the API's admission and the KPA decider (knative/autoscaler/kpa.py) share one set of rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from knserve.knative.apiserver.autoscaling_annotations import (
    HPA,
    KPA,
    PREFIX,
    TARGET_MIN,
    WINDOW_MAX,
    WINDOW_MIN,
    annotation_errors,
    go_float,
    go_int,
    lookup,
    pod_autoscaler_class,
)
from knserve.knative.apiserver.durations import format_duration, parse_duration

ANNOTATION_PREFIX = PREFIX  # "autoscaling.knative.dev/"


@dataclass(frozen=True)
class AutoscalerConfig:
    """Knative's config-autoscaler, resolved for one revision. Durations are in seconds."""

    metric: str = "concurrency"  # "concurrency" or "rps"
    target: float | None = None  # autoscaling.knative.dev/target; None = derive (see target_total)
    container_concurrency: int = 0  # spec.template.spec.containerConcurrency, 0 = unlimited
    container_concurrency_target_default: float = 100.0
    rps_target_default: float = 200.0
    target_utilization_percentage: float = 70.0
    stable_window: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    min_scale: int = 0
    max_scale: int = 0  # 0 = unbounded
    initial_scale: int = 1
    allow_zero_initial_scale: bool = False
    activation_scale: int = 1
    scale_down_delay: float = 0.0
    scale_to_zero_grace_period: float = 30.0
    scale_to_zero_pod_retention_period: float = 0.0
    enable_scale_to_zero: bool = True
    target_burst_capacity: float = 211.0  # -1 = activator always in path, 0 = only at zero
    tick_interval: float = 2.0
    # Read by admission (Knative's webhook reads them from config-autoscaler too).
    pod_autoscaler_class: str = KPA  # the class of a revision without a class annotation
    max_scale_limit: int = 0  # the largest max-scale an annotation may ask for; 0 = no limit
    activator_capacity: float = 100.0  # accepted for fidelity: the plane has one gateway
    # The HPA class's default scale-down stabilization: kube-controller-manager's
    # --horizontal-pod-autoscaler-downscale-stabilization (a cluster's, not config-autoscaler's).
    hpa_downscale_stabilization: float = 300.0

    def __post_init__(self) -> None:
        # Knative's config-autoscaler rules, so a bad global configuration fails at startup.
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"autoscaler config: {message}")

        need(
            self.metric in ("concurrency", "rps"),
            f"metric {self.metric!r} is not concurrency or rps",
        )
        need(self.target is None or self.target >= TARGET_MIN, "target must be at least 0.01")
        need(self.container_concurrency >= 0, "container_concurrency must be 0 or more")
        need(
            min(self.container_concurrency_target_default, self.rps_target_default) >= TARGET_MIN,
            "default targets must be at least 0.01",
        )
        need(1 <= self.target_utilization_percentage <= 100, "target utilization must be 1..100")
        need(WINDOW_MIN <= self.stable_window <= WINDOW_MAX, "stable_window must be 6s..1h")
        need(1 <= self.panic_window_percentage <= 100, "panic_window_percentage must be 1..100")
        need(110 <= self.panic_threshold_percentage <= 1000, "panic threshold must be 110..1000")
        need(min(self.max_scale_up_rate, self.max_scale_down_rate) > 1, "scale rates must be > 1")
        need(min(self.min_scale, self.max_scale) >= 0, "min_scale and max_scale must be >= 0")
        need(self.max_scale == 0 or self.min_scale <= self.max_scale, "min_scale > max_scale")
        need(
            self.initial_scale >= 1 or (self.initial_scale == 0 and self.allow_zero_initial_scale),
            "initial_scale must be >= 1 (0 needs allow_zero_initial_scale)",
        )
        need(self.activation_scale >= 1, "activation_scale must be >= 1")
        need(0 <= self.scale_down_delay <= WINDOW_MAX, "scale_down_delay must be 0..1h")
        need(
            min(self.scale_to_zero_grace_period, self.scale_to_zero_pod_retention_period) >= 0,
            "scale-to-zero periods must be >= 0",
        )
        need(
            self.target_burst_capacity >= 0 or self.target_burst_capacity == -1,
            "target_burst_capacity must be >= 0 or -1",
        )
        need(self.tick_interval > 0, "tick_interval must be > 0")
        need(self.hpa_downscale_stabilization >= 0, "hpa_downscale_stabilization must be >= 0")

    @property
    def target_total(self) -> float:
        """Per-pod capacity before utilization: the annotation target, else containerConcurrency, else the default."""
        if self.metric == "rps":
            return self.target if self.target is not None else self.rps_target_default
        cc = self.container_concurrency
        if self.target is not None:
            # As Knative: never aim above what containerConcurrency lets one pod take.
            return min(self.target, cc) if cc > 0 else self.target
        return float(cc) if cc > 0 else self.container_concurrency_target_default

    @property
    def target_value(self) -> float:
        """What one pod should carry: target_total × utilization (never below 0.01)."""
        return max(TARGET_MIN, self.target_total * self.target_utilization_percentage / 100)

    @property
    def panic_window(self) -> float:
        """The panic window in seconds: panic_window_percentage of the stable window."""
        return self.stable_window * self.panic_window_percentage / 100

    @classmethod
    def from_annotations(
        cls,
        annotations: Mapping[str, str],
        base: AutoscalerConfig | None = None,
        container_concurrency: int | None = None,
    ) -> AutoscalerConfig:
        """Overlay a revision's ``autoscaling.knative.dev/*`` annotations on ``base``.

        ``base`` defaults to Knative's defaults; ``container_concurrency`` is the revision's
        ``containerConcurrency`` (None keeps the base's). The legacy camelCase keys count as
        Knative counts them. Raises ValueError, with Knative's message, for a value Knative's
        webhook refuses.
        """
        base = base if base is not None else cls()
        new: dict[str, Any] = {}
        if container_concurrency is not None:
            if container_concurrency < 0:
                raise ValueError(f"containerConcurrency {container_concurrency} must be 0 or more")
            new["container_concurrency"] = container_concurrency
        # Knative's webhook rules that do not read config-autoscaler; admission has applied them
        # all, so only an object stored before them (or written around the API) fails here.
        errors = annotation_errors(annotations, None, "metadata.annotations")
        if errors:
            raise ValueError("; ".join(errors))
        hpa = pod_autoscaler_class(annotations, base) == HPA
        for name, (field, kind) in _ANNOTATION_FIELDS.items():
            if hpa and name in ("metric", "target"):
                continue  # the HPA's own (cpu or memory): knative.autoscaler.hpa_spec reads them
            found = lookup(annotations, name)
            if found is not None:
                new[field] = _VALUE[kind](found[1])
        if new.get("initial_scale") == 0 and not base.allow_zero_initial_scale:
            # As Knative's GetInitialScale: zero only where config-autoscaler allows it.
            new["initial_scale"] = base.initial_scale
        low, high = new.get("min_scale", base.min_scale), new.get("max_scale", base.max_scale)
        if high and low > high:
            # One bound from the annotation, one from config-autoscaler (admission refuses both
            # from annotations): max-scale wins, as in Knative's applyBounds.
            new["min_scale"] = high
        return dataclasses.replace(base, **new)


# annotation -> (AutoscalerConfig field, value kind); class and metric-aggregation-algorithm are
# checked by admission but change nothing here (one class, one algorithm: the KPA's linear one).
_ANNOTATION_FIELDS: dict[str, tuple[str, str]] = {
    "metric": ("metric", "str"),
    "target": ("target", "float"),
    "window": ("stable_window", "duration"),
    "min-scale": ("min_scale", "int"),
    "max-scale": ("max_scale", "int"),
    "initial-scale": ("initial_scale", "int"),
    "activation-scale": ("activation_scale", "int"),
    "target-utilization-percentage": ("target_utilization_percentage", "float"),
    "target-burst-capacity": ("target_burst_capacity", "float"),
    "panic-window-percentage": ("panic_window_percentage", "float"),
    "panic-threshold-percentage": ("panic_threshold_percentage", "float"),
    "scale-down-delay": ("scale_down_delay", "duration"),
    "scale-to-zero-pod-retention-period": ("scale_to_zero_pod_retention_period", "duration"),
}
_VALUE: dict[str, Any] = {"str": str, "int": int, "float": float, "duration": parse_duration}

# config-autoscaler key -> (AutoscalerConfig field, value kind): every key of Knative's
# NewConfigFromMap (pkg/autoscaler/config/config.go), plus the plane's own tick-interval and the
# HPA's downscale stabilization (on a cluster, a kube-controller-manager flag of that name).
CONFIG_KEYS: dict[str, tuple[str, str]] = {
    "pod-autoscaler-class": ("pod_autoscaler_class", "str"),
    "enable-scale-to-zero": ("enable_scale_to_zero", "bool"),
    "allow-zero-initial-scale": ("allow_zero_initial_scale", "bool"),
    "max-scale-up-rate": ("max_scale_up_rate", "float"),
    "max-scale-down-rate": ("max_scale_down_rate", "float"),
    "container-concurrency-target-percentage": ("target_utilization_percentage", "float"),
    "container-concurrency-target-default": ("container_concurrency_target_default", "float"),
    "requests-per-second-target-default": ("rps_target_default", "float"),
    "target-burst-capacity": ("target_burst_capacity", "float"),
    "panic-window-percentage": ("panic_window_percentage", "float"),
    "activator-capacity": ("activator_capacity", "float"),
    "panic-threshold-percentage": ("panic_threshold_percentage", "float"),
    "initial-scale": ("initial_scale", "int"),
    "min-scale": ("min_scale", "int"),
    "max-scale": ("max_scale", "int"),
    "max-scale-limit": ("max_scale_limit", "int"),
    "stable-window": ("stable_window", "duration"),
    "scale-down-delay": ("scale_down_delay", "duration"),
    "scale-to-zero-grace-period": ("scale_to_zero_grace_period", "duration"),
    "scale-to-zero-pod-retention-period": ("scale_to_zero_pod_retention_period", "duration"),
    "tick-interval": ("tick_interval", "duration"),
    "horizontal-pod-autoscaler-downscale-stabilization": (
        "hpa_downscale_stabilization",
        "duration",
    ),
}
_GO_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def config_from_map(
    data: Mapping[str, Any], base: AutoscalerConfig | None = None
) -> AutoscalerConfig:
    """The global config from config-autoscaler's `data` (`stable-window: 60s`, …), over `base`.

    Reads the keys as Knative's NewConfigFromMap does (a `container-concurrency-target-percentage`
    of 0.7 or 70 is 70 %) and refuses what its validation refuses, with its message, prefixed
    `config-autoscaler:`. `_example` (the documented defaults, in the shipped ConfigMap) is
    ignored, as Knative ignores it. A key Knative does not have is refused, naming the known ones.
    """
    base = base if base is not None else AutoscalerConfig()
    new: dict[str, Any] = {}
    for key, raw in data.items():
        if key == "_example":
            continue
        if key not in CONFIG_KEYS:
            known = ", ".join(sorted(CONFIG_KEYS))
            raise ValueError(f"config-autoscaler: unknown key {key!r}; known keys: {known}")
        field, kind = CONFIG_KEYS[key]
        try:
            new[field] = _config_value(raw, kind)
        except ValueError as exc:
            raise ValueError(f'config-autoscaler: failed to parse "{key}": {exc}') from None
    percentage = new.get("target_utilization_percentage")
    if percentage is not None and percentage <= 1:
        new["target_utilization_percentage"] = percentage * 100  # a fraction, for legacy reasons
    merged = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)} | new
    for message in _config_errors(merged):
        raise ValueError(f"config-autoscaler: {message}")
    return dataclasses.replace(base, **new)


def _config_value(raw: Any, kind: str) -> Any:
    if kind == "duration" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)  # the plain-mapping form may give a number of seconds
    text = str(raw).strip()
    if kind == "bool":
        if text.lower() not in _GO_BOOLS or text not in (text.lower(), text.upper(), text.title()):
            raise ValueError(f"{text!r} is not a boolean; use true or false")
        return _GO_BOOLS[text.lower()]
    if kind == "int":
        whole = go_int(text)
        if whole is None or abs(whole) > 2**31 - 1:
            raise ValueError(f"{text!r} is not a whole number")
        return whole
    if kind == "float":
        number = go_float(text)
        if number is None:
            raise ValueError(f"{text!r} is not a number")
        return number
    return parse_duration(text) if kind == "duration" else text


def _config_errors(c: dict[str, Any]) -> list[str]:
    """Knative's config-autoscaler validation (`validate` in config.go), first failure first."""
    d, fraction = format_duration, c["target_utilization_percentage"] / 100
    max_floor = 1 if c["max_scale_limit"] > 0 else 0
    rules = [
        (
            c["scale_to_zero_grace_period"] > 0,
            f"scale-to-zero-grace-period must be positive, was: {d(c['scale_to_zero_grace_period'])}",
        ),
        (
            c["scale_down_delay"] >= 0,
            f"scale-down-delay cannot be negative, was: {d(c['scale_down_delay'])}",
        ),
        (
            c["scale_down_delay"] == round(c["scale_down_delay"]),
            f"scale-down-delay = {d(c['scale_down_delay'])}, must be specified with at most second precision",
        ),
        (
            c["scale_to_zero_pod_retention_period"] >= 0,
            "scale-to-zero-pod-retention-period cannot be negative, was: "
            f"{d(c['scale_to_zero_pod_retention_period'])}",
        ),
        (
            c["target_burst_capacity"] >= 0 or c["target_burst_capacity"] == -1,
            "target-burst-capacity must be either non-negative or -1 (for unlimited), was: "
            f"{c['target_burst_capacity']:f}",
        ),
        (
            0 < fraction <= 1,
            f"container-concurrency-target-percentage = {fraction:f} is outside of valid range of (0, 100]",
        ),
        (
            fraction * c["container_concurrency_target_default"] >= TARGET_MIN,
            "container-concurrency-target-percentage and container-concurrency-target-default yield "
            f"target concurrency of {_go(fraction * c['container_concurrency_target_default'])}, "
            f"can't be less than {TARGET_MIN}",
        ),
        (
            c["rps_target_default"] >= TARGET_MIN,
            f"requests-per-second-target-default must be at least {TARGET_MIN}, was: "
            f"{_go(c['rps_target_default'])}",
        ),
        (
            c["activator_capacity"] >= 1,
            f"activator-capacity = {_go(c['activator_capacity'])}, must be at least 1",
        ),
        (
            c["max_scale_up_rate"] > 1,
            f"max-scale-up-rate = {_go(c['max_scale_up_rate'])}, must be greater than 1.0",
        ),
        (
            c["max_scale_down_rate"] > 1,
            f"max-scale-down-rate = {_go(c['max_scale_down_rate'])}, must be greater than 1.0",
        ),
        (
            WINDOW_MIN <= c["stable_window"] <= WINDOW_MAX,
            f"stable-window = {d(c['stable_window'])}, must be in [{d(WINDOW_MIN)}; {d(WINDOW_MAX)}] range",
        ),
        (
            c["stable_window"] == round(c["stable_window"]),
            f"stable-window = {d(c['stable_window'])}, must be specified with at most second precision",
        ),
        (
            1 <= c["panic_window_percentage"] <= 100,
            f"panic-window-percentage = {_go(c['panic_window_percentage'])}, must be in [1, 100] interval",
        ),
        (
            c["initial_scale"] >= 1 or (c["initial_scale"] == 0 and c["allow_zero_initial_scale"]),
            f"initial-scale = {c['initial_scale']}, must be at least 0 (or at least 1 when "
            "allow-zero-initial-scale is false)",
        ),
        (c["min_scale"] >= 0, f"min-scale = {c['min_scale']}, must be at least 0"),
        (
            c["max_scale"] >= max_floor
            and not (c["max_scale_limit"] > 0 and c["max_scale"] > c["max_scale_limit"]),
            f"max-scale = {c['max_scale']}, must be in [{max_floor}, max-scale-limit"
            f"({c['max_scale_limit']})] range",
        ),
        (
            c["max_scale_limit"] >= 0,
            f"max-scale-limit = {c['max_scale_limit']}, must be at least 0",
        ),
        (
            not (c["min_scale"] > c["max_scale"] > 0),
            f"min-scale ({c['min_scale']}) must be less than max-scale ({c['max_scale']})",
        ),
        # Beyond Knative: what the local plane cannot run.
        (
            c["pod_autoscaler_class"] in (KPA, HPA),
            f"pod-autoscaler-class {c['pod_autoscaler_class']!r}: the local plane scales with "
            f"Knative's KPA or HPA; use {KPA} or {HPA}",
        ),
        (
            110 <= c["panic_threshold_percentage"] <= 1000,
            f"panic-threshold-percentage = {_go(c['panic_threshold_percentage'])}, must be in "
            "[110, 1000] (the local plane holds it to the annotation's bounds)",
        ),
        (c["tick_interval"] > 0, f"tick-interval = {d(c['tick_interval'])}, must be positive"),
    ]
    return [message for ok, message in rules if not ok]


def _go(value: float) -> str:
    """A float as Go's %v prints it: 1000 for 1000.0, 0.5 for 0.5."""
    return str(int(value)) if value == int(value) and abs(value) < 1e21 else repr(value)
