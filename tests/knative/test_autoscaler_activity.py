"""The KPA decider's life between zero and its first pods, driven by a fake clock: initial scale
and the Active condition, scale to zero counted from the moment the revision becomes inactive,
the wake from zero and the activation scale.

Conventions (tests/support/kpa_fixtures.py): the clock starts at 0; `feed` advances one second and
then records one sample, so after feeding N seconds the clock reads N and the samples sit in
buckets 1..N. A tick at that time sees the current second's bucket. Defaults unless stated: stable
window 60 s (60 buckets), panic window 6 s, utilization 70 %, panic threshold 200 %, scale-down
rate 2, scale-up rate 1000, TBC 211.
"""

from __future__ import annotations

import pytest
from kpa_fixtures import active, at_zero, feed, make, run

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
