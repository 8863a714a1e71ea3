"""A revision's outlier detection settings, from its annotations, with Istio's defaults.

On a cluster a DestinationRule's `trafficPolicy.outlierDetection` sets these for a host; the plane
has no DestinationRule, so a Revision carries them as annotations (on a Service, on its
`spec.template.metadata`), named after the DestinationRule's fields:

    knserve.dev/outlier-consecutive-5xx-errors       5     consecutive5xxErrors (0 turns it off)
    knserve.dev/outlier-consecutive-gateway-errors   0     consecutiveGatewayErrors (0: off)
    knserve.dev/outlier-base-ejection-time           30s   baseEjectionTime (a Go duration)
    knserve.dev/outlier-max-ejection-percent         10    maxEjectionPercent (0-100)
    knserve.dev/outlier-interval                     10s   interval (how fast repeated
                                                           ejections are forgiven)

The gateway applies them (knserve.knative.activator.outlier); the API server refuses a bad value
with the annotation's name and what to write instead. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from knserve.knative.apiserver.durations import parse_duration

PREFIX = "knserve.dev/outlier-"
CONSECUTIVE_5XX = PREFIX + "consecutive-5xx-errors"
CONSECUTIVE_GATEWAY = PREFIX + "consecutive-gateway-errors"
BASE_EJECTION_TIME = PREFIX + "base-ejection-time"
MAX_EJECTION_PERCENT = PREFIX + "max-ejection-percent"
INTERVAL = PREFIX + "interval"
KNOWN = (CONSECUTIVE_5XX, CONSECUTIVE_GATEWAY, BASE_EJECTION_TIME, MAX_EJECTION_PERCENT, INTERVAL)
# Envoy's max_ejection_time default: no ejection lasts longer, however often repeated.
MAX_EJECTION_TIME = 300.0


@dataclass(frozen=True)
class OutlierDetection:
    """A revision's outlier detection settings (Istio's defaults); times in seconds."""

    consecutive_5xx_errors: int = 5
    consecutive_gateway_errors: int = 0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10
    interval: float = 10.0

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any]) -> OutlierDetection:
        """Settings from a Revision's annotations; ValueError naming the annotation on a bad value."""
        default = cls()
        return cls(
            _count(annotations, CONSECUTIVE_5XX, default.consecutive_5xx_errors),
            _count(annotations, CONSECUTIVE_GATEWAY, default.consecutive_gateway_errors),
            _duration(annotations, BASE_EJECTION_TIME, default.base_ejection_time),
            _percent(annotations, MAX_EJECTION_PERCENT, default.max_ejection_percent),
            _duration(annotations, INTERVAL, default.interval),
        )

    def ejection_time(self, ejections: int) -> float:
        """How long the `ejections`-th ejection in a row lasts: the base times the count, at most
        Envoy's max_ejection_time (or the base, if that is longer)."""
        cap = max(MAX_EJECTION_TIME, self.base_ejection_time)
        return float(min(self.base_ejection_time * ejections, cap))


def outlier_annotation_errors(annotations: Mapping[str, Any], path: str) -> list[str]:
    """Messages for the outlier annotations in `annotations` (at `path`) that cannot be read."""
    errors = []
    for key in KNOWN:
        if key in annotations:
            try:
                OutlierDetection.from_annotations({key: annotations[key]})
            except ValueError as exc:
                errors.append(f"{path}: {exc}")
    unknown = sorted(k for k in annotations if k.startswith(PREFIX) and k not in KNOWN)
    for key in unknown:
        errors.append(
            f"{path}: unknown annotation {key}; the outlier annotations are {', '.join(KNOWN)}"
        )
    return errors


def _count(annotations: Mapping[str, Any], key: str, default: int) -> int:
    raw = annotations.get(key)
    if raw is None:
        return default
    text = str(raw).strip()
    if not text.isdigit():
        raise ValueError(f"{key} is {raw!r}; give a whole number, 0 or more")
    return int(text)


def _percent(annotations: Mapping[str, Any], key: str, default: int) -> int:
    value = _count(annotations, key, default)
    if value > 100:
        raise ValueError(f"{key} is {annotations[key]!r}; give a percentage from 0 to 100")
    return value


def _duration(annotations: Mapping[str, Any], key: str, default: float) -> float:
    raw = annotations.get(key)
    if raw is None:
        return default
    try:
        seconds = parse_duration(str(raw))
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"{key} is {raw!r}; give a positive duration such as 500ms, 30s or 2m")
    return seconds
