"""Knative's autoscaling annotations: their keys, legacy spellings included, and the webhook's rules.

Follows Knative Serving's pkg/apis/autoscaling: `register.go` for the keys (each a `KeyPriority`:
the kebab-case key first, then the camelCase one Knative still reads, so `minScale: "2"` means
`min-scale: "2"`, and when both are set the kebab-case one wins, as Knative's lookup has it) and
`annotation_validation.go` (`ValidateAnnotations`) for the rules and their messages, which read
as Knative's webhook writes them: `expected 6s <= 5s <= 1h0m0s: spec.template.metadata.
annotations.autoscaling.knative.dev/window`. Where Knative's message does not say what would be
accepted, a hint follows in parentheses. Pure: plain dicts in, messages out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from knserve.knative.apiserver.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig

GROUP = "autoscaling.knative.dev"
PREFIX = GROUP + "/"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
HPA_METRICS = ("cpu", "memory")  # what the local plane's HPA measures
WINDOW_MIN, WINDOW_MAX = 6.0, 3600.0  # Knative's bounds on the stable window and delays
TARGET_MIN = 0.01  # Knative's floor on any target, so desired = observed / target stays finite
_INT32_MAX = 2**31 - 1
_ALGORITHMS = ("linear", "weighted-exponential", "weightedExponential")

# Each annotation's keys in Knative's lookup order (register.go's kmap.KeyPriority values).
KEYS: dict[str, tuple[str, ...]] = {
    "class": ("class",),
    "metric": ("metric",),
    "target": ("target",),
    "window": ("window",),
    "activation-scale": ("activation-scale",),
    "min-scale": ("min-scale", "minScale"),
    "max-scale": ("max-scale", "maxScale"),
    "initial-scale": ("initial-scale", "initialScale"),
    "target-utilization-percentage": (
        "target-utilization-percentage",
        "targetUtilizationPercentage",
    ),
    "target-burst-capacity": ("target-burst-capacity", "targetBurstCapacity"),
    "panic-window-percentage": ("panic-window-percentage", "panicWindowPercentage"),
    "panic-threshold-percentage": ("panic-threshold-percentage", "panicThresholdPercentage"),
    "scale-down-delay": ("scale-down-delay", "scaleDownDelay"),
    "scale-to-zero-pod-retention-period": (
        "scale-to-zero-pod-retention-period",
        "scaleToZeroPodRetentionPeriod",
    ),
    "metric-aggregation-algorithm": ("metric-aggregation-algorithm", "metricAggregationAlgorithm"),
}


def lookup(annotations: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The (key, value) Knative reads for annotation `name` ("min-scale"), or None when unset."""
    for key in KEYS[name]:
        if PREFIX + key in annotations:
            return PREFIX + key, annotations[PREFIX + key]
    return None


def pod_autoscaler_class(annotations: Mapping[str, str], config: AutoscalerConfig | None) -> str:
    """The class that scales the revision: the annotation, else config-autoscaler's default."""
    found = lookup(annotations, "class")
    if found is not None:
        return found[1]
    return config.pod_autoscaler_class if config is not None else KPA


class _Errors:
    """Knative's FieldError in small: (message, key, hint), printed as `message: path.key`."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str, str]] = []

    def add(self, message: str, key: str, hint: str = "") -> None:
        self.found.append((message, key, hint))

    def invalid(self, value: str, key: str, hint: str = "") -> None:
        self.add(f"invalid value: {value}", key, hint)

    def out_of_bounds(self, value: object, low: object, high: object, key: str) -> None:
        self.add(f"expected {low} <= {value} <= {high}", key)

    def render(self, path: str) -> list[str]:
        # As FieldError.Error(): one line per message (sorted), the paths that share it joined.
        merged: dict[tuple[str, str], list[str]] = {}
        for message, key, hint in self.found:
            merged.setdefault((message, hint), []).append(f"{path}.{key}" if path else key)
        return [
            f"{message}: {', '.join(sorted(set(paths)))}" + (f" ({hint})" if hint else "")
            for (message, hint), paths in sorted(merged.items())
        ]


def annotation_errors(
    annotations: Mapping[str, str], config: AutoscalerConfig | None, path: str
) -> list[str]:
    """Knative's `ValidateAnnotations` of the annotations at `path` ("spec.template.metadata.
    annotations"), one message each. `config` is config-autoscaler; None when it is not known
    (a cluster's), which skips the rules that read it."""
    errs = _Errors()
    _class(annotations, errs)
    _min_max_scale(annotations, config, errs)
    _floats(annotations, errs)
    _window(annotations, errs)
    _durations(annotations, errs)
    _metric(annotations, config, errs)
    _algorithm(annotations, errs)
    _initial_scale(annotations, config, errs)
    return errs.render(path)


def no_autoscaling_annotation_errors(annotations: Mapping[str, str], path: str) -> list[str]:
    """Knative's `ValidateHasNoAutoscalingAnnotation`, for a Service's, Configuration's or
    Route's own metadata: autoscaling annotations work only on the revision template."""
    return [
        f'invalid key name "{key}": {path} (autoscaling annotations must be put under '
        '"spec.template.metadata.annotations" to work)'
        for key in sorted(annotations)
        if key.startswith(GROUP)
    ]


def _class(m: Mapping[str, str], errs: _Errors) -> None:
    found = lookup(m, "class")
    if found and found[1].endswith(".knative.dev") and found[1] not in (KPA, HPA):
        errs.invalid(found[1], found[0], f"use {KPA} or {HPA}")


def go_int(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, …): an optional sign and decimal digits, nothing else."""
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else None


def _int_ge0(m: Mapping[str, str], name: str, errs: _Errors) -> int:
    found = lookup(m, name)
    if found is None:
        return 0
    key, text = found
    value = go_int(text)
    if value is None:
        errs.invalid(text, key, "use a whole number")
        return 0
    if not 0 <= value <= _INT32_MAX:
        errs.out_of_bounds(text, 0, _INT32_MAX, key)
        return 0
    return value


def _min_max_scale(m: Mapping[str, str], config: AutoscalerConfig | None, errs: _Errors) -> None:
    low = _int_ge0(m, "min-scale", errs)
    high = _int_ge0(m, "max-scale", errs)
    if high != 0 and high < low:
        message = f"max-scale={high} is less than min-scale={low}"
        errs.add(message, PREFIX + "max-scale")
        errs.add(message, PREFIX + "min-scale")
    found_max = lookup(m, "max-scale")
    limit = config.max_scale_limit if config is not None else 0
    if found_max and limit:
        if high > limit:
            errs.out_of_bounds(high, 1, limit, found_max[0])
        if high == 0:
            errs.add(f"max-scale=0 (unlimited), must be less than {limit}", found_max[0])
    found = lookup(m, "activation-scale")
    if found is not None:
        key, text = found
        activation = go_int(text)
        if activation is None or abs(activation) > _INT32_MAX:
            errs.invalid(text, key, "use a whole number above 1")
        elif low > activation:
            errs.add(f"min-scale={low} is greater than activation-scale={activation}", key)
        elif high < activation and high != 0:
            errs.add(f"max-scale={high} is less than activation-scale={activation}", key)
        elif activation < 2:
            errs.add(f"activation-scale={activation} must be greater than 1", key)


def go_float(text: str) -> float | None:
    """Go's strconv.ParseFloat for decimal text; None for what is not a finite number (Go
    would take NaN and infinities, which no bound below would then refuse)."""
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _floats(m: Mapping[str, str], errs: _Errors) -> None:
    for name, low, high in (
        ("panic-window-percentage", 1, 100),
        ("panic-threshold-percentage", 110, 1000),
        ("target-utilization-percentage", 1, 100),
    ):
        found = lookup(m, name)
        if found is not None:
            value = go_float(found[1])
            if value is None:
                errs.invalid(found[1], found[0], f"use a number from {low} to {high}")
            elif not low <= value <= high:
                errs.out_of_bounds(found[1], low, high, found[0])
    found = lookup(m, "target")
    if found is not None:
        value = go_float(found[1])
        if value is None:
            errs.invalid(found[1], found[0], f"use a number of at least {TARGET_MIN:g}")
        elif value < TARGET_MIN:
            errs.add(f"target {found[1]} should be at least {TARGET_MIN:g}", found[0])
    found = lookup(m, "target-burst-capacity")
    if found is not None:
        value = go_float(found[1])
        if value is None or (value < 0 and value != -1):
            errs.invalid(found[1], found[0], "use -1 (unlimited), 0 or a positive number")


def _duration(text: str) -> float | None:
    try:
        return parse_duration(text)
    except ValueError:
        return None


_DURATION_HINT = 'use a duration like "60s", "1m30s" or "2m"'
_PRECISION = "must be specified with at most second precision"


def _window(m: Mapping[str, str], errs: _Errors) -> None:
    found = lookup(m, "window")
    if found is not None:
        key, text = PREFIX + "window", found[1]
        seconds = _duration(text)
        if seconds is None:
            errs.invalid(text, key, _DURATION_HINT)
        elif not WINDOW_MIN <= seconds <= WINDOW_MAX:
            low, high = format_duration(WINDOW_MIN), format_duration(WINDOW_MAX)
            errs.out_of_bounds(text, low, high, key)
        elif seconds != int(seconds):
            errs.add(_PRECISION, key)


def _durations(m: Mapping[str, str], errs: _Errors) -> None:
    # The pod retention period and the scale-down delay: 0..1h; the delay in whole seconds.
    for name in ("scale-to-zero-pod-retention-period", "scale-down-delay"):
        found = lookup(m, name)
        if found is None:
            continue
        key, text = found
        seconds = _duration(text)
        if seconds is None:
            errs.invalid(text, key, _DURATION_HINT)
        elif not 0 <= seconds <= WINDOW_MAX:
            errs.out_of_bounds(text, format_duration(0), format_duration(WINDOW_MAX), key)
        elif name == "scale-down-delay" and seconds != round(seconds):
            errs.add(_PRECISION, key)


def _metric(m: Mapping[str, str], config: AutoscalerConfig | None, errs: _Errors) -> None:
    found = lookup(m, "metric")
    if found is None:
        return
    metric, cls = found[1], pod_autoscaler_class(m, config)
    if cls == KPA and metric not in ("concurrency", "rps"):
        errs.invalid(metric, PREFIX + "metric", f"{KPA} scales on concurrency or rps")
    elif cls == HPA and not metric:
        errs.invalid(metric, PREFIX + "metric", f"{HPA} needs a metric such as cpu or memory")
    elif cls == HPA and config is not None and metric not in HPA_METRICS:
        # Beyond Knative (which leaves custom metrics to the cluster's metrics adapter): the
        # local plane measures its replicas' CPU and memory only.
        errs.invalid(
            metric,
            PREFIX + "metric",
            "the local plane's HPA scales on cpu or memory; custom metrics need a cluster",
        )


def _algorithm(m: Mapping[str, str], errs: _Errors) -> None:
    # As Knative: only an explicit KPA class is checked; other autoscalers may have their own.
    cls, found = lookup(m, "class"), lookup(m, "metric-aggregation-algorithm")
    if cls and cls[1] == KPA and found and found[1] and found[1] not in _ALGORITHMS:
        errs.invalid(found[1], found[0], "use linear or weighted-exponential")


def _initial_scale(m: Mapping[str, str], config: AutoscalerConfig | None, errs: _Errors) -> None:
    found = lookup(m, "initial-scale")
    if found is None:
        return
    key, text = found
    value = go_int(text)
    if value is None:
        errs.invalid(text, key, "use a whole number")
    elif value < 0:
        errs.invalid(text, key + " must be greater than 0")
    elif value == 0 and config is not None and not config.allow_zero_initial_scale:
        errs.invalid(
            text,
            key + "=0 not allowed by cluster",
            'use 1 or more, or set allow-zero-initial-scale: "true" in config-autoscaler, '
            "e.g. knserve up --autoscaler allow-zero-initial-scale=true",
        )
