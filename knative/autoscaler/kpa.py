"""Knative's KPA decision algorithm as a pure, clock-injected object.

`Autoscaler` follows Knative Serving's pkg/autoscaler/scaling/autoscaler.go (stable and panic
windows, rate limits, panic mode, scale-down delay, excess burst capacity) plus what the KPA
reconciler does with its answer (initial-scale, min/max-scale, the Active condition, and scale to
zero: the grace and pod retention periods count from the moment the revision becomes inactive).
It does no I/O and never reads the wall clock: the caller records metric samples, calls `scale()`
every `tick_interval` (and `observe()` when the ready pods change) and acts on the returned
`ScaleDecision`. Defaults are config-autoscaler's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Re-exported: the configuration lives in its own pure module, shared with admission.
from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig as AutoscalerConfig
from knserve.knative.apiserver.durations import parse_duration as parse_duration


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
    """The outcome of one `Autoscaler.scale` tick (or of `observe` between ticks)."""

    desired_pods: int  # the replicas to run now
    in_panic: bool
    stable_value: float  # observed metric averaged over the stable window
    panic_value: float  # ... and over the panic window
    excess_burst_capacity: int  # ready × target_total − TBC − panic_value; -1 when TBC = -1
    activator_in_path: bool  # the SKS's proxy mode: nothing wanted, EBC < 0, or no ready pod
    reason: str  # what decided desired_pods, e.g. "stable", "panic", "min-scale"
    # The PodAutoscaler's status, which the Revision's conditions mirror:
    active: str = "Unknown"  # Active: "True", "False" (inactive) or "Unknown" (activating)
    active_reason: str = "Queued"  # or, when inactive, "NoTraffic" or "TimedOut"
    initialized: bool = False  # ScaleTargetInitialized: initial-scale was reached once


# Knative gives up activating a revision that never becomes ready after the Deployment's progress
# deadline (config-deployment's 600 s) plus a 10 s buffer (kpa/scaler.go's activationTimeout).
ACTIVATION_TIMEOUT = 610.0


@dataclass
class _Decided:
    """What the last tick decided, kept so `observe` can report it with fresh pod counts."""

    want: int  # the PA's want: -1 while an activating revision's scale is left alone
    pods: int
    reason: str
    stable: float
    panic: float


class Autoscaler:
    """One revision's KPA: record metric samples, call `scale` each tick and `observe` when the
    ready pod count changes in between.

    `scale` runs Knative's decider (pkg/autoscaler/scaling/autoscaler.go), then what the KPA
    reconciler does with its answer (pkg/reconciler/autoscaling/kpa/scaler.go and kpa.go):

    - bounds: min-scale and max-scale, and initial-scale as a floor until the revision first has
      that many ready pods (ScaleTargetInitialized);
    - scale to zero (`handleScaleToZero`): an *active* revision the decider wants at zero keeps one
      pod until it has been active for a stable window, then becomes inactive (Active=False,
      NoTraffic) with its pods left as they are. The scale-to-zero grace period and the pod
      retention period count from that moment: the last pod goes once the revision has been
      inactive for max(grace, retention), or sooner once it has been inactive for the retention
      period and the activator has been in the path (SKS proxy mode) for the grace period, as the
      grace period only allows for the network to put the activator in front;
    - the Active condition (`computeActiveCondition`): Unknown/Queued while fewer pods than needed
      are ready, True once they are, False when nothing is wanted. An activating revision the
      decider no longer wants is left alone until `activation_timeout`, then scaled to zero as
      TimedOut.
    """

    def __init__(
        self,
        config: AutoscalerConfig,
        clock: Callable[[], float],
        activation_timeout: float = ACTIVATION_TIMEOUT,
    ) -> None:
        self.config = config
        self.activation_timeout = activation_timeout
        self._clock = clock
        self._stable = MetricWindow(config.stable_window)
        self._panic = MetricWindow(config.panic_window)
        self._panic_time: float | None = None  # last tick over the panic threshold
        self._max_panic_pods = 0
        self._delay: deque[tuple[float, int]] = deque()  # (tick time, recommendation)
        cfg, now = config, clock()
        self._initial = (
            min(cfg.initial_scale, cfg.max_scale) if cfg.max_scale else cfg.initial_scale
        )
        # As the Deployment is created with initial-scale replicas: the count a tick that does not
        # apply a scale leaves in place.
        self._decided = _Decided(self._initial, self._initial, "initial-scale", 0.0, 0.0)
        # initial-scale 0 is reached at once: the revision is inactive, and ready, with no pod.
        self._initialized = self._initial == 0
        self._active, self._active_reason = (
            ("False", "NoTraffic") if self._initialized else ("Unknown", "Queued")
        )
        self._active_since = now  # the Active condition's lastTransitionTime
        self._proxy_since: float | None = now  # no pod is ready yet: the activator holds requests
        self._ebc = 0

    def record(self, value: float, now: float | None = None) -> None:
        """Record the revision's observed concurrency (or requests per second) at ``now``."""
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"metric sample must be a finite number >= 0, got {value}")
        sample = Sample(self._clock() if now is None else now, value)
        self._stable.record(sample)
        self._panic.record(sample)

    def scale(self, ready_pods: int, now: float | None = None) -> ScaleDecision:
        """Decide the desired pod count given ``ready_pods`` ready replicas now."""
        if ready_pods < 0:
            raise ValueError(f"ready_pods must be >= 0, got {ready_pods}")
        now = self._clock() if now is None else now
        stable, panic = self._stable.average(now), self._panic.average(now)
        desired, reason = self._decide(stable, panic, ready_pods, now)
        desired, reason = self._bound(desired, reason)
        want, apply, reason = self._handle_scale_to_zero(desired, reason, now)
        pods = want if apply else self._decided.pods
        if pods == 0 and not apply:
            reason = "scaled to zero"  # a hold at zero pods (initial-scale 0) is at zero too
        self._decided = _Decided(want, pods, reason, stable, panic)
        return self.observe(ready_pods, now)

    def observe(self, ready_pods: int, now: float | None = None) -> ScaleDecision:
        """The last decision with the PA's status brought up to date for ``ready_pods`` ready
        replicas: pods that became ready (or were lost) between ticks move Active and
        ScaleTargetInitialized at once, as the KPA reconciles on every endpoints change."""
        if ready_pods < 0:
            raise ValueError(f"ready_pods must be >= 0, got {ready_pods}")
        cfg, last = self.config, self._decided
        now = self._clock() if now is None else now
        self._compute_active(ready_pods, last.want, now)
        # Excess burst capacity uses the panic value: the activator should not flap on the slow metric.
        if cfg.target_burst_capacity == 0:
            self._ebc = 0
        elif cfg.target_burst_capacity > 0:
            total = ready_pods * cfg.target_total
            self._ebc = math.floor(total - cfg.target_burst_capacity - last.panic)
        else:
            self._ebc = -1
        proxy = last.want == 0 or self._ebc < 0 or ready_pods == 0
        if not proxy:
            self._proxy_since = None
        elif self._proxy_since is None:
            self._proxy_since = now
        return ScaleDecision(
            desired_pods=last.pods,
            in_panic=self._panic_time is not None,
            stable_value=last.stable,
            panic_value=last.panic,
            excess_burst_capacity=self._ebc,
            activator_in_path=proxy,
            reason=last.reason,
            active=self._active,
            active_reason=self._active_reason,
            initialized=self._initialized,
        )

    # ---- the decider (autoscaler.go) ---------------------------------------------------------

    def _decide(self, stable: float, panic: float, ready_pods: int, now: float) -> tuple[int, str]:
        """Knative's decider: the stable step, the panic step over it, then scale-down delay."""
        # Zero ready pods count as one, so the rate limits still allow growth from zero.
        ready = max(1, ready_pods)
        desired, reason = self._stable_step(stable, ready)
        if self._panic_step(panic, ready, desired, now):
            desired, reason = self._max_panic_pods, "panic"
        return self._delay_scale_down(desired, reason, now)

    def _rate_limited(self, pods: int, ready: int) -> int:
        """`pods` within max-scale-up-rate and max-scale-down-rate of `ready`."""
        cfg = self.config
        max_up = math.ceil(cfg.max_scale_up_rate * ready)
        max_down = math.floor(ready / cfg.max_scale_down_rate)
        return min(max(pods, max_down), max_up)

    def _stable_step(self, stable: float, ready: int) -> tuple[int, str]:
        """The pods the stable window asks for."""
        cfg = self.config
        dspc = math.ceil(stable / cfg.target_value)
        want = self._rate_limited(dspc, ready)
        # As Knative: while there is any demand, ask for at least activation-scale pods, so a
        # revision woken from zero comes up with that many (it may still go to zero when idle).
        if dspc > 0 and want < cfg.activation_scale:
            return cfg.activation_scale, "activation-scale"
        return want, "stable"

    def _panic_step(self, panic: float, ready: int, want_stable: int, now: float) -> bool:
        """Enter, extend or leave panic mode; True while in it, with `_max_panic_pods` the count
        to provision (it never goes down while panicking)."""
        cfg = self.config
        dppc = math.ceil(panic / cfg.target_value)
        if dppc / ready >= cfg.panic_threshold_percentage / 100:
            self._panic_time = now  # enter panic, or extend it while the burst lasts
        elif self._panic_time is not None and now > self._panic_time + cfg.stable_window:
            # A full stable window without the panic condition: the burst is in the stable metric now.
            self._panic_time, self._max_panic_pods = None, 0
        if self._panic_time is None:
            return False
        want_panic = self._rate_limited(dppc, ready)
        if dppc > 0:
            want_panic = max(want_panic, cfg.activation_scale)
        # Provision for whichever window asks more, and never scale down while panicking.
        self._max_panic_pods = max(self._max_panic_pods, want_stable, want_panic)
        return True

    def _delay_scale_down(self, desired: int, reason: str, now: float) -> tuple[int, str]:
        """scale-down-delay: the highest count decided within the delay."""
        delay = self.config.scale_down_delay
        if delay <= 0:
            return desired, reason
        self._delay.append((now, desired))
        while self._delay[0][0] <= now - delay:
            self._delay.popleft()
        held = max(v for _, v in self._delay)
        if held > desired:
            return held, "scale-down-delay"
        return desired, reason

    # ---- the KPA reconciler (kpa/scaler.go, kpa.go) ------------------------------------------

    def _bound(self, desired: int, reason: str) -> tuple[int, str]:
        cfg = self.config
        # Until initial-scale is first reached it is a floor (Knative lifts min for initial > 1;
        # initial-scale 1 is held by the activating case of _handle_scale_to_zero instead).
        if not self._initialized and self._initial > 1 and desired < self._initial:
            desired, reason = self._initial, "initial-scale"
        if desired < cfg.min_scale:
            desired, reason = cfg.min_scale, "min-scale"
        if cfg.max_scale and desired > cfg.max_scale:
            desired, reason = cfg.max_scale, "max-scale"
        return desired, reason

    def _handle_scale_to_zero(self, desired: int, reason: str, now: float) -> tuple[int, bool, str]:
        """(want, whether to apply it, reason): Knative's handleScaleToZero."""
        cfg = self.config
        if desired != 0:
            return desired, True, reason
        if not cfg.enable_scale_to_zero:
            return 1, True, "scale-to-zero disabled"
        since = now - self._active_since
        if self._active == "Unknown":  # activating: leave the pods alone until it times out
            if since >= self.activation_timeout:
                return 0, True, "activation timed out"
            return -1, False, "activating"
        if self._active == "True":
            if since >= cfg.stable_window:
                return 0, False, "scale-to-zero grace period"  # becomes inactive; pods stay
            return 1, True, "active for less than a stable window"
        retention = cfg.scale_to_zero_pod_retention_period
        if since >= max(cfg.scale_to_zero_grace_period, retention):
            return 0, True, "scaled to zero"
        if since < retention:
            return 0, False, "pod retention period"
        proxy_for = 0.0 if self._proxy_since is None else now - self._proxy_since
        if proxy_for >= cfg.scale_to_zero_grace_period:
            return 0, True, "scaled to zero"  # the activator was in the path long enough already
        return 0, False, "scale-to-zero grace period"

    def _compute_active(self, ready_pods: int, want: int, now: float) -> None:
        # The ready pods that make the revision active: initial-scale until reached, then one.
        min_ready = max(self.config.min_scale, 1 if self._initialized else self._initial)
        if ready_pods >= min_ready:
            self._initialized = True
        if want == 0:  # only an activation that timed out wants zero while activating
            self._set_active("False", "TimedOut" if self._active == "Unknown" else "NoTraffic", now)
        elif ready_pods < min_ready:
            if want > 0 or self._active != "False":
                self._set_active("Unknown", "Queued", now)
        elif want > 0 or self._active != "False":
            self._set_active("True", "", now)

    def _set_active(self, status: str, reason: str, now: float) -> None:
        if status != self._active:
            self._active_since = now
        self._active, self._active_reason = status, reason
