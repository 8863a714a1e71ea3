"""The KPA decider (knative/autoscaler/kpa.py), driven by a fake clock through Knative's classic
cases: steady load, panic, scale rates, clamps, scale-down delay, the RPS metric, burst capacity,
and the properties that hold for any load.

Conventions (tests/support/kpa_fixtures.py): the clock starts at 0; `feed` advances one second and
then records one sample, so after feeding N seconds the clock reads N and the samples sit in
buckets 1..N. A tick at that time sees the current second's bucket. Defaults unless stated: stable
window 60 s (60 buckets), panic window 6 s, utilization 70 %, panic threshold 200 %, scale-down
rate 2, scale-up rate 1000, TBC 211.

Its configuration is in test_autoscaler_kpa_config.py, the metric window in
test_autoscaler_window.py, initial scale, activation and scale to zero in
test_autoscaler_activity.py.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kpa_fixtures import FakeClock, P, feed, make, run

from knserve.knative.autoscaler.kpa import Autoscaler, AutoscalerConfig, ScaleDecision

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
