"""Knative's KPA decision algorithm as a pure, clock-injected object.

`Autoscaler` follows Knative Serving's pkg/autoscaler/scaling/autoscaler.go (stable and panic
windows, rate limits, panic mode, scale-down delay, excess burst capacity) plus the bounds the KPA
reconciler applies after it (initial-scale, min/max-scale, scale-to-zero grace and pod retention).
It does no I/O and never reads the wall clock: the caller records metric samples, calls `scale()`
every `tick_interval` and acts on the returned `ScaleDecision`. Defaults are config-autoscaler's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Re-exported: the configuration lives in its own pure module, shared with admission.
from knserve.knative.autoscaler_config import (  # noqa: F401
    ANNOTATION_PREFIX,
    CONFIG_KEYS,
    TARGET_MIN,
    WINDOW_MAX,
    WINDOW_MIN,
    AutoscalerConfig,
    config_from_map,
    parse_duration,
)


@dataclass(frozen=True)
class Sample:
    """One observation of the scaling metric (concurrency or requests per second) at ``time``."""

    time: float
    value: float


class MetricWindow:
    """Average over a sliding window of per-second buckets, as Knative's TimedFloat64Buckets.

    A bucket holds the mean of the samples that fell into its second (one gateway may sample several
    times a second; summing would count one revision's load twice). Like Knative, seconds before the
    first sample and after the last one are not averaged in (a missing report is no information, not
    zero load), gaps between samples count as zero, and a whole window without samples reads 0.
    """

    def __init__(self, window: float, granularity: float = 1.0) -> None:
        self.window = window
        self.granularity = granularity
        self._size = max(1, math.ceil(window / granularity))
        self._buckets: dict[int, list[float]] = {}  # bucket index -> [sum, count]
        self._first: int | None = None
        self._last: int | None = None

    def record(self, sample: Sample) -> None:
        """Add one sample; samples older than the window are dropped."""
        i = math.floor(sample.time / self.granularity)
        if self._last is None or self._first is None or i - self._last >= self._size:
            # Nothing for a whole window: start over so the partial-window average applies again.
            self._buckets.clear()
            self._first = self._last = i
        elif i <= self._last - self._size:
            return
        self._first, self._last = min(self._first, i), max(self._last, i)
        bucket = self._buckets.setdefault(i, [0.0, 0.0])
        bucket[0] += sample.value
        bucket[1] += 1
        if len(self._buckets) > self._size:
            for old in [k for k in self._buckets if k <= self._last - self._size]:
                del self._buckets[old]

    def average(self, now: float) -> float:
        """The window average at ``now`` (0 when the window holds no data)."""
        if self._first is None or self._last is None:
            return 0.0
        n = math.floor(now / self.granularity)
        lo, hi = max(n - self._size + 1, self._first), min(n, self._last)
        if hi < lo:
            return 0.0
        total = sum(s / c for k, (s, c) in self._buckets.items() if lo <= k <= hi)
        return total / (hi - lo + 1)


@dataclass(frozen=True)
class ScaleDecision:
    """The outcome of one `Autoscaler.scale` tick."""

    desired_pods: int
    in_panic: bool
    stable_value: float  # observed metric averaged over the stable window
    panic_value: float  # ... and over the panic window
    excess_burst_capacity: int  # ready × target_total − TBC − panic_value; -1 when TBC = -1
    activator_in_path: bool  # EBC < 0, or no ready pod to send a request to
    reason: str  # what decided desired_pods, e.g. "stable", "panic", "min-scale"


class Autoscaler:
    """One revision's KPA decider: record metric samples, call `scale` each tick."""

    def __init__(self, config: AutoscalerConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._stable = MetricWindow(config.stable_window)
        self._panic = MetricWindow(config.panic_window)
        self._panic_time: float | None = None  # last tick over the panic threshold
        self._max_panic_pods = 0
        self._delay: deque[tuple[float, int]] = deque()  # (tick time, recommendation)
        # Creation counts as activity, so a new revision is not reaped before the grace period.
        self._last_active = clock()
        self._initialized = config.initial_scale == 0

    def record(self, value: float, now: float | None = None) -> None:
        """Record the revision's observed concurrency (or requests per second) at ``now``."""
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"metric sample must be a finite number >= 0, got {value}")
        sample = Sample(self._clock() if now is None else now, value)
        self._stable.record(sample)
        self._panic.record(sample)
        if value > 0:
            self._last_active = max(self._last_active, sample.time)

    def scale(self, ready_pods: int, now: float | None = None) -> ScaleDecision:
        """Decide the desired pod count given ``ready_pods`` ready replicas now."""
        if ready_pods < 0:
            raise ValueError(f"ready_pods must be >= 0, got {ready_pods}")
        cfg = self.config
        now = self._clock() if now is None else now
        stable, panic = self._stable.average(now), self._panic.average(now)
        # Zero ready pods count as one, so the rate limits still allow growth from zero.
        ready = max(1, ready_pods)
        max_up = math.ceil(cfg.max_scale_up_rate * ready)
        max_down = math.floor(ready / cfg.max_scale_down_rate)
        dspc = math.ceil(stable / cfg.target_value)
        dppc = math.ceil(panic / cfg.target_value)
        want_stable = min(max(dspc, max_down), max_up)
        want_panic = min(max(dppc, max_down), max_up)
        # As Knative: while there is any demand, ask for at least activation-scale pods, so a
        # revision woken from zero comes up with that many (it may still go to zero when idle).
        activated = dspc > 0 and want_stable < cfg.activation_scale
        if activated:
            want_stable = cfg.activation_scale
        if dppc > 0:
            want_panic = max(want_panic, cfg.activation_scale)

        if dppc / ready >= cfg.panic_threshold_percentage / 100:
            self._panic_time = now  # enter panic, or extend it while the burst lasts
        elif self._panic_time is not None and now > self._panic_time + cfg.stable_window:
            # A full stable window without the panic condition: the burst is in the stable metric now.
            self._panic_time, self._max_panic_pods = None, 0

        desired, reason = want_stable, "activation-scale" if activated else "stable"
        if self._panic_time is not None:
            # Provision for whichever window asks more, and never scale down while panicking.
            reason = "panic"
            self._max_panic_pods = max(self._max_panic_pods, want_stable, want_panic)
            desired = self._max_panic_pods

        if cfg.scale_down_delay > 0:
            self._delay.append((now, desired))
            while self._delay[0][0] <= now - cfg.scale_down_delay:
                self._delay.popleft()
            held = max(v for _, v in self._delay)
            if held > desired:
                desired, reason = held, "scale-down-delay"

        if not self._initialized:
            # Until the revision first reaches initial-scale ready pods, ask for at least that many.
            initial = min(cfg.initial_scale, cfg.max_scale) if cfg.max_scale else cfg.initial_scale
            if ready_pods >= initial:
                self._initialized = True
            elif desired < initial:
                desired, reason = initial, "initial-scale"
        if desired < cfg.min_scale:
            desired, reason = cfg.min_scale, "min-scale"
        if cfg.max_scale and desired > cfg.max_scale:
            desired, reason = cfg.max_scale, "max-scale"

        if desired == 0:
            idle = now - self._last_active
            if not cfg.enable_scale_to_zero:
                desired, reason = 1, "scale-to-zero disabled"
            elif ready_pods > 0 and idle < cfg.scale_to_zero_grace_period:
                desired, reason = 1, "scale-to-zero grace period"
            elif ready_pods > 0 and idle < cfg.scale_to_zero_pod_retention_period:
                desired, reason = 1, "pod retention period"
            else:
                reason = "scaled to zero"

        # Excess burst capacity uses the panic value: the activator should not flap on the slow metric.
        if cfg.target_burst_capacity == 0:
            ebc = 0
        elif cfg.target_burst_capacity > 0:
            total = ready_pods * cfg.target_total
            ebc = math.floor(total - cfg.target_burst_capacity - panic)
        else:
            ebc = -1
        return ScaleDecision(
            desired_pods=desired,
            in_panic=self._panic_time is not None,
            stable_value=stable,
            panic_value=panic,
            excess_burst_capacity=ebc,
            activator_in_path=ready_pods == 0 or ebc < 0,
            reason=reason,
        )
