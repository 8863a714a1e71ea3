"""For the KPA decider's tests: a fake clock and the helpers that drive the decider with it.

Conventions: the clock starts at 0; `feed` advances one second and then records one sample, so
after feeding N seconds the clock reads N and the samples sit in buckets 1..N. `run` feeds and
ticks every `tick` seconds; `make` builds a decider on a fresh clock, `active` one whose first pod
became ready at t = 0, `at_zero` one that went idle and was scaled to zero. `P` prefixes
Knative's autoscaling annotations.
"""

from __future__ import annotations

from knserve.knative.autoscaler.kpa import Autoscaler, AutoscalerConfig, ScaleDecision

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
