"""Where a synchronous predict runs: inline on the event loop, or on a thread.

KServe runs a synchronous `predict` on the event loop, so one slow model stalls health probes and
every other model (a known complaint). Sending every call to a thread fixes that but costs a
thread hop per request — about a third of the whole budget of a ~100 µs predict.

So each model gets a policy that measures its calls: it starts on the thread pool for a few
probe calls, moves inline once the moving average is well under `threshold`, and goes back to
the pool as soon as one call or the average is slow. A fast model pays nothing; a slow one stalls
the loop at most once, for one call, before it is moved off.

The policy is pure (durations in, decisions out) so it is tested without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OffloadPolicy:
    """Decides, call by call, whether a synchronous hook may run on the event loop."""

    # A call this long (seconds) delays every other request on the loop noticeably; 1 ms is
    # about ten requests' worth of serving overhead.
    threshold: float = 0.001
    # Calls timed on the thread pool before a model may run inline.
    probe_calls: int = 3
    # Weight of the newest call in the moving average.
    alpha: float = 0.2
    inline: bool = field(default=False, init=False)
    average: float | None = field(default=None, init=False)
    calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.threshold <= 0:
            raise ValueError(f"threshold is {self.threshold}, it must be more than 0 seconds")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha is {self.alpha}, it must be in (0, 1]")

    def record(self, seconds: float) -> None:
        """Account one call that took `seconds` and decide where the next one runs."""
        self.calls += 1
        self.average = (
            seconds
            if self.average is None
            else self.alpha * seconds + (1 - self.alpha) * self.average
        )
        if self.inline:
            # One slow call is enough to move off the loop: it already stalled everybody once.
            if seconds > self.threshold or self.average > self.threshold / 2:
                self.inline = False
        elif self.calls >= self.probe_calls and self.average < self.threshold / 4:
            self.inline = True


@dataclass
class AlwaysThread(OffloadPolicy):
    """Never inline (for models known to be slow, or `--offload always`)."""

    def record(self, seconds: float) -> None:
        self.calls += 1


@dataclass
class AlwaysInline(OffloadPolicy):
    """Always inline (`--offload never`: the caller accepts that a slow predict stalls the loop)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.inline = True

    def record(self, seconds: float) -> None:
        self.calls += 1
