"""The HorizontalPodAutoscaler a revision of the HPA class gets, as Knative's HPA reconciler makes it.

Follows Knative Serving's pkg/reconciler/autoscaling/hpa/resources/hpa.go (`MakeHPA`):

- min and max from `min-scale`/`max-scale` (else config-autoscaler's), min at least 1 (an HPA
  never scales to zero; Knative leaves MinReplicas unset at 0, which Kubernetes defaults to 1) and
  max-scale 0 meaning no limit;
- `metric: cpu` with `target: N` → a Utilization target of ceil(N) percent of the CPU request;
  `metric: memory` with `target: N` → an AverageValue target of N MiB per replica;
- no `target` → no metric in the HPA, which Kubernetes defaults to 80 % CPU utilization (even for
  `metric: memory`, as on a cluster);
- `window` → the stabilization window of both scale-up and scale-down; without it, scale-up is
  not stabilized and scale-down uses the controller's default (300 s; the plane's
  `horizontal-pod-autoscaler-downscale-stabilization` setting shrinks it for tests).

Pure: annotations and config in, an `HPASpec` out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig
from knserve.knative.apiserver.autoscaling_annotations import (
    HPA,
    go_float,
    go_int,
    lookup,
    pod_autoscaler_class,
)
from knserve.knative.apiserver.durations import parse_duration
from knserve.knative.autoscaler.hpa import (
    DEFAULT_METRIC,
    MAX_REPLICAS,
    SCALE_DOWN,
    SCALE_UP,
    HPASpec,
)
from knserve.knative.autoscaler.hpa_replicas import MetricTarget

MIB = 1024 * 1024


def is_hpa_class(annotations: Mapping[str, str], config: AutoscalerConfig | None) -> bool:
    """Whether Knative's HPA, not the KPA, scales a revision with these annotations."""
    return pod_autoscaler_class(annotations, config) == HPA


def hpa_spec(annotations: Mapping[str, str], config: AutoscalerConfig) -> HPASpec:
    """The HPA for a revision's annotations (module docstring); ValueError for what cannot run."""
    low = _int(annotations, "min-scale", config.min_scale)
    high = _int(annotations, "max-scale", config.max_scale)
    low = max(low, 1)
    high = MAX_REPLICAS if high == 0 else max(high, low)
    metric = DEFAULT_METRIC
    found_metric = lookup(annotations, "metric")
    name = found_metric[1] if found_metric else "cpu"  # Knative's default metric for the HPA
    found_target = lookup(annotations, "target")
    if name not in ("cpu", "memory"):
        raise ValueError(
            f"metric {name!r}: the local plane's HPA scales on cpu or memory (custom metrics "
            "need a cluster's metrics adapter)"
        )
    if found_target is not None:
        target = go_float(found_target[1])
        if target is None or target <= 0:
            raise ValueError(f"target {found_target[1]!r} must be a number above 0")
        if name == "cpu":
            metric = MetricTarget("cpu", "Utilization", float(math.ceil(target)))
        else:
            metric = MetricTarget("memory", "AverageValue", float(int(target) * MIB))
    up, down = SCALE_UP, SCALE_DOWN
    found_window = lookup(annotations, "window")
    if found_window is not None:
        window = float(int(parse_duration(found_window[1])))
        up = dataclasses.replace(SCALE_UP, stabilization_window=window)
        down = dataclasses.replace(SCALE_DOWN, stabilization_window=window)
    return HPASpec(
        metric=metric,
        min_replicas=low,
        max_replicas=high,
        scale_up=up,
        scale_down=down,
        downscale_stabilization=config.hpa_downscale_stabilization,
    )


def _int(annotations: Mapping[str, str], name: str, default: int) -> int:
    found = lookup(annotations, name)
    value = go_int(found[1]) if found else None
    return default if value is None else value
