"""Knative's autoscaling configuration: config-autoscaler and the `autoscaling.knative.dev/*` annotations.

`AutoscalerConfig` is config-autoscaler resolved for one revision; `config_from_map` reads the
ConfigMap's keys and `AutoscalerConfig.from_annotations` overlays a revision's annotations. Pure:
no I/O, so the API's admission and the KPA decider (knative/autoscaler.py) share one set of rules.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANNOTATION_PREFIX = "autoscaling.knative.dev/"
WINDOW_MIN, WINDOW_MAX = 6.0, 3600.0  # Knative's bounds on the stable window and delays
TARGET_MIN = 0.01  # Knative's floor on any target, so desired = observed / target stays finite

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)"


def parse_duration(text: str) -> float:
    """Parse a Go duration as Knative's annotations use them ("60s", "1m30s", "1.5h", "0") to seconds."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body[1:] if body[:1] in ("+", "-") else body
    if body == "0":
        return 0.0
    if not body or not re.fullmatch(f"(?:{_PART})+", body):
        raise ValueError(f'"{text}" is not a duration; write it like "60s", "1m30s" or "2m"')
    return sign * sum(float(n) * _UNITS[u] for n, u in re.findall(_PART, body))


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
        ``containerConcurrency`` (None keeps the base's). Raises ValueError naming the annotation,
        the bad value and what would be accepted.
        """
        base = base if base is not None else cls()
        new: dict[str, Any] = {}
        if container_concurrency is not None:
            if container_concurrency < 0:
                raise ValueError(f"containerConcurrency {container_concurrency} must be 0 or more")
            new["container_concurrency"] = container_concurrency
        for name, (kind, lo, hi) in _ANNOTATIONS.items():
            raw = annotations.get(ANNOTATION_PREFIX + name)
            if raw is not None:
                field = "stable_window" if name == "window" else name.replace("-", "_")
                new[field] = _parse(f'{ANNOTATION_PREFIX}{name} "{raw}"', raw, kind, lo, hi)
        if new.get("initial_scale") == 0 and not base.allow_zero_initial_scale:
            raise ValueError(
                f'{ANNOTATION_PREFIX}initial-scale "0" needs allow-zero-initial-scale '
                "in the autoscaler config; use 1 or more"
            )
        tbc = new.get("target_burst_capacity", 0)
        if tbc < 0 and tbc != -1:
            raise ValueError(
                f'{ANNOTATION_PREFIX}target-burst-capacity "{tbc:g}" is invalid; '
                "use -1 (unlimited), 0 or a positive number"
            )
        low, high = new.get("min_scale", base.min_scale), new.get("max_scale", base.max_scale)
        if high and low > high:
            raise ValueError(
                f"{ANNOTATION_PREFIX}min-scale {low} is greater than {ANNOTATION_PREFIX}max-scale "
                f"{high}; lower min-scale or raise max-scale (0 = unbounded)"
            )
        return dataclasses.replace(base, **new)


# config-autoscaler key (Knative's ConfigMap, plus our tick-interval) -> (field, value kind)
CONFIG_KEYS: dict[str, tuple[str, str]] = {
    "stable-window": ("stable_window", "duration"),
    "panic-window-percentage": ("panic_window_percentage", "float"),
    "panic-threshold-percentage": ("panic_threshold_percentage", "float"),
    "max-scale-up-rate": ("max_scale_up_rate", "float"),
    "max-scale-down-rate": ("max_scale_down_rate", "float"),
    "target-burst-capacity": ("target_burst_capacity", "float"),
    "container-concurrency-target-default": ("container_concurrency_target_default", "float"),
    "container-concurrency-target-percentage": ("target_utilization_percentage", "float"),
    "requests-per-second-target-default": ("rps_target_default", "float"),
    "scale-to-zero-grace-period": ("scale_to_zero_grace_period", "duration"),
    "scale-to-zero-pod-retention-period": ("scale_to_zero_pod_retention_period", "duration"),
    "enable-scale-to-zero": ("enable_scale_to_zero", "bool"),
    "initial-scale": ("initial_scale", "int"),
    "allow-zero-initial-scale": ("allow_zero_initial_scale", "bool"),
    "min-scale": ("min_scale", "int"),
    "max-scale": ("max_scale", "int"),
    "activation-scale": ("activation_scale", "int"),
    "scale-down-delay": ("scale_down_delay", "duration"),
    "tick-interval": ("tick_interval", "duration"),
}


def config_from_map(
    data: Mapping[str, Any], base: AutoscalerConfig | None = None
) -> AutoscalerConfig:
    """The global config from config-autoscaler's keys (`stable-window: 60s`, …), over `base`.

    Raises ValueError naming the key and what it accepts, as a ConfigMap typo should fail at start.
    """
    new: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in CONFIG_KEYS:
            known = ", ".join(sorted(CONFIG_KEYS))
            raise ValueError(f"autoscaler config: unknown key {key!r}; known keys: {known}")
        field, kind = CONFIG_KEYS[key]
        text = str(raw).strip()
        try:
            if kind == "duration":
                new[field] = float(raw) if isinstance(raw, int | float) else parse_duration(text)
            elif kind == "bool":
                if text.lower() not in ("true", "false"):
                    raise ValueError(f"{text!r} is not true or false")
                new[field] = text.lower() == "true"
            elif kind == "int":
                new[field] = int(text)
            else:
                new[field] = float(text)
        except ValueError as exc:
            raise ValueError(f"autoscaler config: {key}: {exc}") from None
    return dataclasses.replace(base if base is not None else AutoscalerConfig(), **new)


# annotation -> (value kind, minimum, maximum), bounds as Knative validates them. The config field
# is the annotation's name with underscores, except window → stable_window. Knative wants the
# window and the delay in whole seconds ("seconds"); the retention period may be finer.
_ANNOTATIONS: dict[str, tuple[str, float | None, float | None]] = {
    "metric": ("metric", None, None),
    "min-scale": ("int", 0, None),
    "max-scale": ("int", 0, None),
    "initial-scale": ("int", 0, None),
    "activation-scale": ("int", 1, None),
    "target": ("float", TARGET_MIN, None),
    "target-utilization-percentage": ("float", 1, 100),
    "panic-window-percentage": ("float", 1, 100),
    "panic-threshold-percentage": ("float", 110, 1000),
    "target-burst-capacity": ("float", None, None),
    "window": ("seconds", WINDOW_MIN, WINDOW_MAX),
    "scale-down-delay": ("seconds", 0, WINDOW_MAX),
    "scale-to-zero-pod-retention-period": ("duration", 0, WINDOW_MAX),
}


def _parse(key: str, raw: str, kind: str, lo: float | None, hi: float | None) -> Any:
    """Parse one annotation value; ``key`` is the annotation and value, for error messages."""
    if kind == "metric":
        if raw not in ("concurrency", "rps"):
            raise ValueError(f'{key} is not supported by the KPA; use "concurrency" or "rps"')
        return raw
    duration = kind in ("seconds", "duration")
    try:
        value = parse_duration(raw) if duration else (int if kind == "int" else float)(raw.strip())
    except ValueError as exc:
        what = (
            'a duration like "60s", "1m30s" or "2m"'
            if duration
            else f"a {'whole ' if kind == 'int' else ''}number"
        )
        raise ValueError(f"{key} is not {what}") from exc
    unit = "s" if duration else ""
    if not math.isfinite(value):
        raise ValueError(f"{key} is not a finite number")
    if lo is not None and value < lo:
        raise ValueError(f"{key} is below the minimum {_show(lo, unit)}")
    if hi is not None and value > hi:
        raise ValueError(f"{key} is above the maximum {_show(hi, unit)}")
    if kind == "seconds" and value != int(value):
        raise ValueError(f"{key} must be a whole number of seconds")
    return value


def _show(bound: float, unit: str) -> str:
    return "1h" if unit and bound == WINDOW_MAX else f"{bound:g}{unit}"
