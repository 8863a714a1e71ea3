"""The KPA decider (knative/autoscaler/kpa.py), driven by a fake clock through Knative's classic cases.

Conventions: the clock starts at 0; `feed` advances one second and then records one sample, so after
feeding N seconds the clock reads N and the samples sit in buckets 1..N. A tick at that time sees
the current second's bucket. Defaults unless stated: stable window 60 s (60 buckets), panic window
6 s, utilization 70 %, panic threshold 200 %, scale-down rate 2, scale-up rate 1000, TBC 211.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knserve.knative.autoscaler.kpa import (
    Autoscaler,
    AutoscalerConfig,
    MetricWindow,
    Sample,
    ScaleDecision,
    parse_duration,
)

P = "autoscaling.knative.dev/"


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(**config: object) -> tuple[Autoscaler, FakeClock]:
    clock = FakeClock()
    return Autoscaler(AutoscalerConfig(**config), clock), clock  # type: ignore[arg-type]


def feed(scaler: Autoscaler, clock: FakeClock, value: float, seconds: int) -> None:
    """One sample a second for `seconds` seconds (advance, then record)."""
    for _ in range(seconds):
        clock.advance(1)
        scaler.record(value)


def run(
    scaler: Autoscaler, clock: FakeClock, value: float, seconds: int, ready: int, tick: int = 2
) -> list[ScaleDecision]:
    """Feed `value` for `seconds` seconds, ticking every `tick` seconds with `ready` pods."""
    decisions = []
    for second in range(1, seconds + 1):
        clock.advance(1)
        scaler.record(value)
        if second % tick == 0:
            decisions.append(scaler.scale(ready))
    return decisions


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


# --- the metric window -----------------------------------------------------------------------


def test_window_averages_per_second_buckets() -> None:
    window = MetricWindow(10.0)
    for t in range(1, 11):
        window.record(Sample(float(t), float(t)))
    assert window.average(10.0) == 5.5  # (1 + … + 10) / 10
    window.record(Sample(11.0, 11.0))
    assert window.average(11.0) == 6.5  # (2 + … + 11) / 10: second 1 slid out


def test_window_bucket_is_the_mean_of_its_samples() -> None:
    window = MetricWindow(10.0)
    for t, v in ((1.0, 10.0), (1.25, 20.0), (1.75, 30.0)):
        window.record(Sample(t, v))
    assert window.average(1.9) == 20.0  # one bucket, mean of 10, 20, 30


def test_window_partial_at_start_and_after_last_sample() -> None:
    window = MetricWindow(10.0)
    for t in range(1, 6):
        window.record(Sample(float(t), 10.0))
    assert window.average(5.0) == 10.0  # 5 buckets written so far: not diluted by the empty 5
    assert window.average(8.0) == 10.0  # seconds 6..8 never reported: no information, not 0
    assert window.average(14.0) == 10.0  # only second 5 is still in the window (5..14)
    assert window.average(15.0) == 0.0  # a whole window without data


def test_window_gaps_between_samples_count_as_zero() -> None:
    window = MetricWindow(10.0)
    window.record(Sample(1.0, 10.0))
    window.record(Sample(4.0, 10.0))
    assert window.average(4.0) == 5.0  # (10 + 0 + 0 + 10) / 4


def test_window_restarts_after_a_silent_window_and_drops_stale_samples() -> None:
    window = MetricWindow(10.0)
    window.record(Sample(1.0, 10.0))
    window.record(Sample(20.0, 4.0))  # 19 s later: the first sample is history
    assert window.average(20.0) == 4.0
    window.record(Sample(5.0, 1000.0))  # older than the window: ignored
    assert window.average(20.0) == 4.0
    window.record(Sample(15.0, 2.0))  # late but inside the window: counted, window now 15..20
    assert window.average(20.0) == 1.0  # (2 + 0·4 + 4) / 6


def test_empty_window_reads_zero() -> None:
    assert MetricWindow(6.0).average(100.0) == 0.0


# --- the decider -----------------------------------------------------------------------------


def test_steady_load() -> None:
    # target 10 × 70 % = 7 per pod; 10 concurrent → ceil(10 / 7) = 2 pods.
    scaler, clock = make(target=10.0)
    feed(scaler, clock, 10.0, 60)
    decision = scaler.scale(2)
    # EBC = 2 pods × 10 − 211 − 10 = −201: the activator stays in the path.
    assert decision == ScaleDecision(2, False, 10.0, 10.0, -201, True, "stable", "True", "", True)
    # Steady state holds tick after tick.
    assert {d.desired_pods for d in run(scaler, clock, 10.0, 60, ready=2)} == {2}


def test_steady_load_default_target() -> None:
    # No target, no containerConcurrency: 100 × 70 % = 70; 150 concurrent → ceil(150/70) = 3.
    scaler, clock = make()
    feed(scaler, clock, 150.0, 60)
    assert scaler.scale(3).desired_pods == 3


def test_burst_triggers_panic_holds_a_stable_window_and_ends() -> None:
    scaler, clock = make(target=10.0)  # 7 per pod
    feed(scaler, clock, 7.0, 54)  # seconds 1..54 at 7
    feed(scaler, clock, 70.0, 6)  # seconds 55..60 at 70: the burst fills the panic window
    burst = scaler.scale(1)
    # stable = (54·7 + 6·70) / 60 = 13.3 → ceil(13.3/7) = 2; panic = 70 → ceil(70/7) = 10.
    # 10 / 1 ready = 1000 % ≥ 200 % → panic; desired = max(2, 10) = 10.
    # EBC = 1 × 10 − 211 − 70 = −271.
    assert burst == ScaleDecision(
        10, True, pytest.approx(13.3), 70.0, -271, True, "panic", "True", "", True
    )
    assert clock.now == 60.0

    # The burst passes; 10 pods are up. Panic holds (no scale-down) through t = 60 + 60 = 120,
    # even though the stable metric soon asks for far fewer.
    hold = run(scaler, clock, 7.0, 60, ready=10)  # ticks at 62, 64, …, 120
    assert [(d.desired_pods, d.in_panic, d.reason) for d in hold] == [(10, True, "panic")] * 30
    assert hold[-1].stable_value == pytest.approx(7.0)  # at 120 the window 61..120 is all 7s

    # t = 122 > 120: a full stable window without the panic condition → un-panic.
    # Stable wants ceil(7/7) = 1, but the scale-down rate allows floor(10 / 2) = 5 at most.
    end = run(scaler, clock, 7.0, 2, ready=10)[0]
    assert (end.desired_pods, end.in_panic, end.reason) == (5, False, "stable")


def test_panic_extends_while_the_burst_lasts_and_only_grows() -> None:
    scaler, clock = make(target=10.0)
    feed(scaler, clock, 7.0, 54)
    feed(scaler, clock, 70.0, 6)
    assert scaler.scale(1).desired_pods == 10
    # Still 70 concurrent with only 3 ready: panic 10 / 3 ≥ 2 → the panic clock restarts at 62.
    # Stable: buckets 3..62 = 52·7 + 8·70 = 924 → 15.4 → ceil(2.2) = 3; panic = 10 → keep max 10.
    d = run(scaler, clock, 70.0, 2, ready=3)[0]
    assert (d.desired_pods, d.in_panic, d.stable_value) == (10, True, pytest.approx(15.4))
    # The load grows further with 10 ready: 140 for 6 s (63..68). Tick 68: panic window 63..68
    # = 140 → ceil(140/7) = 20 ≥ 2 × 10 → still over the threshold; the panic clock restarts at 68.
    d = run(scaler, clock, 140.0, 6, ready=10)[-1]
    assert (d.desired_pods, d.in_panic) == (20, True)
    # The load collapses to 0 with 20 ready: panic holds 20 through 68 + 60 = 128.
    holding = run(scaler, clock, 0.0, 62, ready=20)  # ticks 70, 72, …, 130
    assert [(d.desired_pods, d.in_panic) for d in holding[:-1]] == [(20, True)] * 30
    after = holding[-1]  # t = 130 > 128: un-panic. The stable window (71..130) is all zeros,
    # but the scale-down rate keeps floor(20 / 2) = 10.
    assert (after.desired_pods, after.in_panic, after.stable_value) == (10, False, 0.0)


def test_no_panic_below_threshold() -> None:
    # 13 concurrent on 1 pod: panic wants ceil(13/7) = 2 = 200 % of 1 → panic (threshold inclusive).
    scaler, clock = make(target=10.0)
    feed(scaler, clock, 13.0, 6)
    assert scaler.scale(1).in_panic is True
    # 12 concurrent on 1 pod with threshold 300 %: ceil(12/7) = 2 → 200 % < 300 % → no panic.
    scaler, clock = make(target=10.0, panic_threshold_percentage=300.0)
    feed(scaler, clock, 12.0, 6)
    d = scaler.scale(1)
    assert (d.desired_pods, d.in_panic) == (2, False)


def test_slow_decay_bounded_by_max_scale_down_rate() -> None:
    scaler, clock = make(target=10.0)
    feed(scaler, clock, 7.0, 60)  # stable wants ceil(7/7) = 1
    # floor(10/2) = 5, floor(5/2) = 2, floor(2/2) = 1, then the stable answer 1.
    assert [scaler.scale(r).desired_pods for r in (10, 5, 2, 1)] == [5, 2, 1, 1]
    # With a gentler rate of 4: floor(10/4) = 2.
    scaler, clock = make(target=10.0, max_scale_down_rate=4.0)
    feed(scaler, clock, 7.0, 60)
    assert scaler.scale(10).desired_pods == 2


def test_scale_up_bounded_by_max_scale_up_rate() -> None:
    scaler, clock = make(target=10.0, max_scale_up_rate=2.0)
    feed(scaler, clock, 700.0, 60)  # wants ceil(700/7) = 100 pods
    # ceil(2 × 1) = 2; zero ready counts as one; ceil(2 × 3) = 6; ceil(2 × 40) = 80.
    assert [scaler.scale(r).desired_pods for r in (1, 0, 3, 40)] == [2, 2, 6, 80]
    # A rate of 1.1 still grows by at least one pod: ceil(1.1 × 1) = 2, ceil(1.1 × 5) = 6.
    scaler, clock = make(target=10.0, max_scale_up_rate=1.1)
    feed(scaler, clock, 700.0, 60)
    assert [scaler.scale(r).desired_pods for r in (1, 5)] == [2, 6]
    # The default 1000 never binds here: ceil(1000 × 1) = 1000 ≥ 100.
    scaler, clock = make(target=10.0)
    feed(scaler, clock, 700.0, 60)
    assert scaler.scale(1).desired_pods == 100


def test_max_scale_clamps() -> None:
    scaler, clock = make(target=10.0, max_scale=3)
    feed(scaler, clock, 70.0, 60)  # wants 10, panics at 3 ready (10/3 ≥ 2)
    d = scaler.scale(3)
    assert (d.desired_pods, d.in_panic, d.reason) == (3, True, "max-scale")


def test_min_scale_clamps_and_keeps_pods_when_idle() -> None:
    scaler, clock = make(target=10.0, min_scale=2)
    d = scaler.scale(2)  # no traffic: stable 0, rate bound floor(2/2) = 1 → min-scale 2
    assert (d.desired_pods, d.reason) == (2, "min-scale")
    clock.advance(3600)
    assert scaler.scale(2).desired_pods == 2  # never to zero
    feed(scaler, clock, 35.0, 60)  # ceil(35/7) = 5 above the floor
    assert scaler.scale(5).desired_pods == 5


def active(**config: object) -> tuple[Autoscaler, FakeClock]:
    """A scaler whose first pod became ready at t = 0 (Active since 0)."""
    scaler, clock = make(**config)
    d = scaler.scale(1)
    assert (d.desired_pods, d.active, d.initialized) == (1, "True", True)
    return scaler, clock


def at_zero(**config: object) -> tuple[Autoscaler, FakeClock]:
    """A scaler that went idle and was scaled to zero (ticking every second)."""
    scaler, clock = active(**config)
    for _ in range(200):
        clock.advance(1)
        if scaler.scale(1).desired_pods == 0:
            return scaler, clock
    raise AssertionError("never scaled to zero")


# --- initial scale and the Active condition ---------------------------------------------------


def test_initial_scale_until_first_reached_then_the_decider_rules() -> None:
    scaler, _ = make(initial_scale=3)
    d = scaler.scale(0)  # no traffic yet: the revision comes up with 3 pods
    assert (d.desired_pods, d.reason, d.active, d.active_reason, d.initialized) == (
        3,
        "initial-scale",
        "Unknown",
        "Queued",
        False,
    )
    # Pods becoming ready between ticks: not initialized (nor active) before all 3 are ready.
    assert [(d.active, d.initialized) for d in map(scaler.observe, (1, 2))] == [
        ("Unknown", False)
    ] * 2
    d = scaler.observe(3)
    assert (d.desired_pods, d.active, d.initialized) == (3, "True", True)
    # From now on the decider rules; idle → floor(3/2) = 1 by the rate bound, then one pod kept
    # for the rest of the stable window since the revision became active.
    assert [(d.desired_pods, d.reason) for d in map(scaler.scale, (3, 1))] == [
        (1, "stable"),
        (1, "active for less than a stable window"),
    ]
    assert scaler.observe(0).initialized  # initialized once is initialized for good


def test_initial_scale_floor_is_ticked_until_reached() -> None:
    # The floor holds at every tick before initialization, even with fewer ready pods.
    scaler, _ = make(initial_scale=3)
    assert [(d.desired_pods, d.reason) for d in map(scaler.scale, (0, 2))] == [
        (3, "initial-scale")
    ] * 2
    # The tick that sees 3 ready still applies the floor (Knative marks initialized afterwards).
    d = scaler.scale(3)
    assert (d.desired_pods, d.reason, d.initialized) == (3, "initial-scale", True)
    assert scaler.scale(3).desired_pods == 1


def test_initial_scale_is_capped_by_max_scale() -> None:
    scaler, _ = make(initial_scale=5, max_scale=2)
    assert (scaler.scale(0).desired_pods, scaler.observe(1).initialized) == (2, False)
    assert scaler.observe(2).initialized  # 2 ready = the capped initial scale


def test_initial_scale_zero_is_ready_with_no_pod_and_a_request_wakes_it() -> None:
    scaler, clock = make(initial_scale=0, allow_zero_initial_scale=True)
    d = scaler.scale(0)
    assert (d.desired_pods, d.reason, d.active, d.active_reason, d.initialized) == (
        0,
        "scaled to zero",
        "False",
        "NoTraffic",
        True,
    )
    clock.advance(100)
    assert scaler.scale(0).desired_pods == 0  # stays at zero while nothing asks
    scaler.record(1.0)  # the activator holds the first request
    d = scaler.scale(0)
    assert (d.desired_pods, d.active, d.active_reason, d.activator_in_path) == (
        1,
        "Unknown",
        "Queued",
        True,
    )
    d = scaler.observe(1)
    assert (d.desired_pods, d.active, d.activator_in_path) == (1, "True", True)  # EBC 100 − 211 < 0


def test_a_lost_pod_makes_an_active_revision_activating_until_it_is_back() -> None:
    scaler, clock = active(target=10.0)
    feed(scaler, clock, 7.0, 6)
    assert scaler.scale(1).active == "True"
    assert (scaler.observe(0).active, scaler.observe(0).active_reason) == ("Unknown", "Queued")
    assert scaler.observe(1).active == "True"


def test_activation_that_never_succeeds_times_out_to_zero() -> None:
    # Woken from zero, the pod never becomes ready and the demand goes away: the scale is left
    # alone (Knative waits for the progress deadline) until the activation timeout, then zero.
    scaler, clock = at_zero(stable_window=6.0)
    woke = clock.now
    scaler.record(1.0)
    assert scaler.scale(0).desired_pods == 1
    clock.advance(100)  # the window has long forgotten the request
    d = scaler.scale(0)
    assert (d.desired_pods, d.reason, d.active) == (1, "activating", "Unknown")
    clock.now = woke + 609.0
    assert scaler.scale(0).desired_pods == 1
    clock.now = woke + 610.0
    d = scaler.scale(0)
    assert (d.desired_pods, d.reason, d.active, d.active_reason) == (
        0,
        "activation timed out",
        "False",
        "TimedOut",
    )
    clock.advance(1)
    assert (scaler.scale(0).desired_pods, scaler.scale(0).active_reason) == (0, "NoTraffic")


def test_a_new_revision_whose_initial_scale_is_never_reached_keeps_it() -> None:
    scaler, clock = make(initial_scale=3)
    clock.advance(3600)
    assert scaler.scale(2).desired_pods == 3  # a floor, not an activation: no timeout


# --- scale to zero: counted from the moment the revision becomes inactive ----------------------


@pytest.mark.parametrize(
    ("tbc", "retention", "held_for", "zero_at"),
    [
        # The activator enters the path only when the revision becomes inactive (TBC 0): the last
        # pod goes after the grace period, or the retention period if longer, from t = 16.
        (0.0, 0.0, "scale-to-zero grace period", 46),
        (0.0, 60.0, "pod retention period", 76),
        (0.0, 5.0, "scale-to-zero grace period", 46),
        # The activator was in the path all along (default TBC 211 > 1 pod × 10): the grace period
        # ran from t = 0, so the pod goes at t = 30, or once retained for 60 s from t = 16.
        (211.0, 0.0, "scale-to-zero grace period", 30),
        (211.0, 60.0, "pod retention period", 76),
        (211.0, 5.0, "scale-to-zero grace period", 30),
    ],
)
def test_grace_and_retention_count_from_the_inactive_transition(
    tbc: float, retention: float, held_for: str, zero_at: int
) -> None:
    scaler, clock = active(
        target=10.0,
        stable_window=6.0,
        target_burst_capacity=tbc,
        scale_to_zero_pod_retention_period=retention,
    )
    busy = run(scaler, clock, 7.0, 10, ready=1, tick=1)  # last request at t = 10
    assert {(d.desired_pods, d.active) for d in busy} == {(1, "True")}
    idle = run(scaler, clock, 0.0, zero_at - 10, ready=1, tick=1)  # ticks 11 … zero_at
    by_time = {11 + i: d for i, d in enumerate(idle)}
    # 11..15: the stable window still holds the load; 16: all zeros, and the revision has been
    # active (since t = 0) for a stable window, so it becomes inactive with its pod kept.
    assert {(by_time[t].desired_pods, by_time[t].reason) for t in range(11, 16)} == {(1, "stable")}
    assert (by_time[16].desired_pods, by_time[16].active, by_time[16].active_reason) == (
        1,
        "False",
        "NoTraffic",
    )
    assert by_time[16].activator_in_path  # inactive: the activator is in the path
    held = {by_time[t].reason for t in range(17, zero_at)}
    assert {by_time[t].desired_pods for t in range(16, zero_at)} == {1}
    assert held_for in held
    assert (by_time[zero_at].desired_pods, by_time[zero_at].reason) == (0, "scaled to zero")
    assert scaler.scale(0).desired_pods == 0  # and stays there


def test_with_default_windows_the_last_pod_goes_a_stable_window_after_the_last_request() -> None:
    # Knative's default with containerConcurrency 0: the activator is in the path (EBC < 0), so the
    # 30 s grace period is spent long before the 60 s stable window empties.
    scaler, clock = active(target=10.0)
    run(scaler, clock, 7.0, 10, ready=1)  # last request at t = 10, ticks every 2 s
    idle = run(scaler, clock, 0.0, 64, ready=1)  # ticks 12 … 74
    zero = next(12 + 2 * i for i, d in enumerate(idle) if d.desired_pods == 0)
    inactive = next(12 + 2 * i for i, d in enumerate(idle) if d.active == "False")
    assert (inactive, zero) == (70, 72)  # the window 11..70 is empty at 70: inactive, then zero


def test_a_new_revision_without_traffic_is_kept_a_stable_window_after_it_became_ready() -> None:
    scaler, clock = make(stable_window=6.0, target_burst_capacity=0.0)
    assert (scaler.scale(0).desired_pods, scaler.scale(0).reason) == (1, "activating")
    clock.advance(2)
    assert scaler.observe(1).active == "True"  # ready at t = 2
    decisions = run(scaler, clock, 0.0, 36, ready=1, tick=1)  # ticks 3 … 38
    assert {d.reason for d in decisions[:5]} == {"active for less than a stable window"}  # 3..7
    assert decisions[5].active == "False"  # t = 8: active for 6 s → inactive
    assert [d.desired_pods for d in decisions[5:]] == [1] * 30 + [0]  # zero at 8 + 30 = 38


def test_traffic_during_the_grace_period_makes_the_revision_active_again() -> None:
    scaler, clock = active(target=10.0, stable_window=6.0, target_burst_capacity=0.0)
    clock.advance(10)
    d = scaler.scale(1)
    assert (d.desired_pods, d.active) == (1, "False")  # inactive at t = 10, pod kept
    clock.advance(5)
    scaler.record(7.0)
    d = scaler.scale(1)
    assert (d.desired_pods, d.active, d.activator_in_path) == (1, "True", False)
    # Idle again: a new stable window of activity, a new inactive moment, a whole new grace period.
    later = run(scaler, clock, 0.0, 60, ready=1, tick=1)  # ticks 16 … 75
    inactive = next(16 + i for i, d in enumerate(later) if d.active == "False")
    zero = next(16 + i for i, d in enumerate(later) if d.desired_pods == 0)
    assert (inactive, zero) == (21, 51)


def test_scale_to_zero_disabled_keeps_one_pod() -> None:
    scaler, clock = active(enable_scale_to_zero=False)
    clock.advance(3600)
    assert [(d.desired_pods, d.reason) for d in map(scaler.scale, (1, 0))] == [
        (1, "scale-to-zero disabled"),
        (1, "scale-to-zero disabled"),
    ]


def test_wake_from_zero_and_activation_scale() -> None:
    scaler, clock = at_zero(target=10.0, stable_window=6.0, activation_scale=3)
    assert scaler.scale(0).desired_pods == 0  # and stays there
    scaler.record(1.0)  # a request held by the activator
    d = scaler.scale(0)
    # ceil(1/7) = 1, lifted to activation-scale 3; no pod ready so the activator holds it.
    assert (d.desired_pods, d.reason, d.activator_in_path, d.active) == (
        3,
        "activation-scale",
        True,
        "Unknown",
    )
    # With demand for more than the activation scale it does not bind: ceil(35/7) = 5.
    feed(scaler, clock, 35.0, 6)
    assert scaler.scale(3).desired_pods == 5
    # Without activation scale a single request wakes one pod.
    scaler, clock = at_zero(target=10.0, stable_window=6.0)
    scaler.record(1.0)
    assert (scaler.scale(0).desired_pods, scaler.scale(0).reason) == (1, "stable")


def test_activation_scale_releases_when_idle() -> None:
    scaler, clock = active(target=10.0, stable_window=6.0, activation_scale=3)
    feed(scaler, clock, 1.0, 6)  # t = 6, last traffic at 6
    assert scaler.scale(3).desired_pods == 3
    clock.advance(7)  # t = 13: the window is silent; the rate bound allows floor(3/2) = 1
    assert scaler.scale(3).desired_pods == 1
    clock.advance(1)  # active since 0 for more than a stable window: inactive, the pod kept
    assert (scaler.scale(1).desired_pods, scaler.scale(1).active) == (1, "False")
    clock.advance(30)  # the grace period
    assert scaler.scale(1).desired_pods == 0


def test_scale_down_delay_holds_the_max_recommendation() -> None:
    scaler, clock = make(target=10.0, stable_window=6.0, scale_down_delay=10.0)
    feed(scaler, clock, 70.0, 6)  # t = 6
    assert scaler.scale(10).desired_pods == 10  # ceil(70/7); 10/10 < 2: no panic
    feed(scaler, clock, 7.0, 6)  # t = 12: stable 7 → rate bound floor(10/2) = 5
    d = scaler.scale(10)
    assert (d.desired_pods, d.reason) == (10, "scale-down-delay")  # 10 from t = 6 is 6 s old
    clock.advance(3)  # t = 15: the t = 6 recommendation is 9 s old, still inside 10 s
    assert scaler.scale(10).desired_pods == 10
    clock.advance(1)  # t = 16: it is 10 s old → out; max(5 at 12, 5 at 15, 5 at 16) = 5
    d = scaler.scale(10)
    assert (d.desired_pods, d.reason) == (5, "stable")


def test_scale_down_delay_does_not_delay_scale_up() -> None:
    scaler, clock = make(target=10.0, stable_window=6.0, scale_down_delay=60.0)
    feed(scaler, clock, 7.0, 6)
    assert scaler.scale(1).desired_pods == 1
    feed(scaler, clock, 21.0, 6)  # ceil(21/7) = 3; panic window 21 → 3/1 ≥ 2 → panic, 3
    assert scaler.scale(1).desired_pods == 3


def test_rps_metric() -> None:
    cfg = AutoscalerConfig.from_annotations({P + "metric": "rps"}, container_concurrency=10)
    clock = FakeClock()
    scaler = Autoscaler(cfg, clock)
    feed(scaler, clock, 280.0, 60)  # 280 rps over 200 × 70 % = 140 per pod → 2 pods
    d = scaler.scale(2)
    # containerConcurrency 10 does not cap an rps target; EBC = 2 × 200 − 211 − 280 = −91.
    assert d == ScaleDecision(2, False, 280.0, 280.0, -91, True, "stable", "True", "", True)
    cfg = AutoscalerConfig.from_annotations({P + "metric": "rps", P + "target": "50"})
    scaler = Autoscaler(cfg, clock)
    feed(scaler, clock, 280.0, 60)  # 50 × 70 % = 35 → ceil(280/35) = 8; 8/8 ready: no panic
    assert scaler.scale(8).desired_pods == 8


@pytest.mark.parametrize(
    ("tbc", "ready", "ebc", "in_path"),
    [
        # target 100, 50 concurrent: EBC = ready × 100 − TBC − 50, floored.
        (211.0, 3, 39, False),  # 300 − 211 − 50
        (211.0, 2, -61, True),  # 200 − 211 − 50
        (211.0, 0, -261, True),  # nothing ready
        (250.0, 3, 0, False),  # exactly enough spare: EBC 0 is not negative
        (250.5, 3, -1, True),  # floor(−0.5) = −1
        (0.0, 1, 0, False),  # TBC 0: the activator leaves as soon as a pod is ready…
        (0.0, 0, 0, True),  # …but at zero it must hold the requests
        (-1.0, 100, -1, True),  # TBC −1: the activator always stays in the path
    ],
)
def test_target_burst_capacity(tbc: float, ready: int, ebc: int, in_path: bool) -> None:
    scaler, clock = make(target_burst_capacity=tbc)
    feed(scaler, clock, 50.0, 60)
    d = scaler.scale(ready)
    assert (d.excess_burst_capacity, d.activator_in_path) == (ebc, in_path)


def test_burst_capacity_uses_the_panic_value() -> None:
    scaler, clock = make()  # target 100
    feed(scaler, clock, 0.0, 54)
    feed(scaler, clock, 100.0, 6)  # stable 10, panic 100
    d = scaler.scale(4)
    assert (d.stable_value, d.panic_value) == (10.0, 100.0)
    assert d.excess_burst_capacity == 89  # 4 × 100 − 211 − 100, not − 10


def test_clock_is_used_when_now_is_omitted_and_explicit_now_wins() -> None:
    scaler, clock = make(target=10.0)
    clock.advance(5)
    scaler.record(14.0)  # at t = 5
    scaler.record(14.0, now=6.0)
    d = scaler.scale(2, now=6.0)
    assert (d.stable_value, d.desired_pods) == (14.0, 2)


def test_rejects_nonsense_inputs() -> None:
    scaler, _ = make()
    with pytest.raises(ValueError, match="ready_pods must be >= 0"):
        scaler.scale(-1)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite number >= 0"):
            scaler.record(bad)


# --- properties ------------------------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.floats(0, 500, allow_nan=False),  # observed value
        st.sampled_from([0.25, 1.0, 2.0, 7.0, 31.0]),  # seconds until the next tick
        st.integers(0, 60),  # ready pods
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps,
    min_scale=st.integers(0, 5),
    extra=st.integers(0, 10),
    target=st.sampled_from([1.0, 10.0, 100.0]),
    scale_to_zero=st.booleans(),
    delay=st.sampled_from([0.0, 10.0]),
    activation=st.integers(1, 4),
    initial=st.integers(1, 8),
)
def test_desired_always_within_the_clamps(
    steps: list[tuple[float, float, int]],
    min_scale: int,
    extra: int,
    target: float,
    scale_to_zero: bool,
    delay: float,
    activation: int,
    initial: int,
) -> None:
    max_scale = 0 if extra == 0 else min_scale + extra  # 0 = unbounded
    scaler, clock = make(
        stable_window=6.0,
        min_scale=min_scale,
        max_scale=max_scale,
        target=target,
        enable_scale_to_zero=scale_to_zero,
        scale_down_delay=delay,
        activation_scale=activation,
        initial_scale=initial,
        scale_to_zero_grace_period=5.0,
    )
    initialized = False
    for value, dt, ready in steps:
        scaler.record(value)
        clock.advance(dt)
        d = scaler.scale(ready)
        assert d.desired_pods >= max(min_scale, 0 if scale_to_zero else 1)
        if max_scale:
            assert d.desired_pods <= max_scale
        # the activator is in the path (SKS proxy mode) when nothing is wanted (inactive), when
        # the burst capacity is short, or with no pod to send to
        assert d.activator_in_path == (
            ready == 0 or d.excess_burst_capacity < 0 or d.active == "False"
        )
        assert d.active != "True" or ready >= 1
        initialized = initialized or d.initialized
        assert d.initialized == initialized  # once initialized, for good


@settings(max_examples=150, deadline=None)
@given(steps=steps)
def test_never_scales_down_while_in_panic(steps: list[tuple[float, float, int]]) -> None:
    scaler, clock = make(target=10.0, stable_window=6.0)
    previous: ScaleDecision | None = None
    for value, dt, ready in steps:
        scaler.record(value)
        clock.advance(dt)
        d = scaler.scale(ready)
        if previous is not None and previous.in_panic and d.in_panic:
            assert d.desired_pods >= previous.desired_pods
        previous = d


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=30))
def test_window_average_lies_between_the_bucket_extremes(values: list[float]) -> None:
    window = MetricWindow(60.0)
    for t, v in enumerate(values):
        window.record(Sample(float(t), v))
    average = window.average(float(len(values) - 1))
    assert min(values) - 1e-9 <= average <= max(values) + 1e-9
    assert average == pytest.approx(sum(values) / len(values))
