"""Where a synchronous predict runs: inline on the event loop, or on a thread.

KServe runs a synchronous `predict` on the event loop, so one slow model stalls health probes and
every other model (a known complaint). Sending every call to a thread fixes that but costs a
thread hop per request — about a third of the whole budget of a ~100 µs predict.

So each model gets a policy that measures its calls: it starts on the thread pool for a few
probe calls, moves inline once the moving average is under half the `threshold`, and goes back to
the pool as soon as one call or the average is slow. A fast model pays nothing; a slow one stalls
the loop for one call before it is moved off.

A call is charged what it would hold the loop for, not its wall time: on a busy machine a fast
predict is preempted now and then, and on the pool its wall time includes waiting for the GIL
the loop holds, so wall times kept a ~200 µs model on the pool for most of a benchmark, a
thread hop on every request. `CallClock` reads the thread's own CPU time and voluntary context
switches around the call (~2 µs). A call that never gave up the CPU is charged its CPU time.
One that did, inline with none of the model's calls on the pool, waited for something of its
own (I/O, a sleep, a lock) and is charged its wall time; if such waits come often, the model
waits twice as many calls on the pool each time before it is tried inline again (on the pool
its waits cannot be told from GIL waits, and inline a rare wait may be for the GIL of another
thread, so it is never kept off for good).

The policy and `call_cost` are pure (durations in, decisions out), tested without a clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

try:
    from resource import RUSAGE_THREAD, getrusage

    THREAD_USAGE = True
except ImportError:  # not Linux: no per-thread usage, so every call is charged its wall time
    THREAD_USAGE = False


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
    # Calls on the pool before the next move inline: `probe_calls`, doubled each time a call
    # that waited moves the model off sooner than that many calls inline, so a model that waits
    # stalls the loop ever more rarely, and one that waited once in a long while (for the GIL of
    # another thread) starts over.
    probes: int = field(default=0, init=False)
    pool_calls: int = field(default=0, init=False)
    inline_calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.threshold <= 0:
            raise ValueError(f"threshold is {self.threshold}, it must be more than 0 seconds")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha is {self.alpha}, it must be in (0, 1]")
        self.probes = self.probe_calls

    def record(self, seconds: float, waited: bool = False) -> None:
        """Account one call that held its thread `seconds` (see `CallClock.cost`) and decide
        where the next one runs; `waited`: an inline call that waited, charged its wall time."""
        self.calls += 1
        self.average = (
            seconds
            if self.average is None
            else self.alpha * seconds + (1 - self.alpha) * self.average
        )
        # In below half the threshold, out above three quarters (or one slow call): a band wide
        # enough that a model near the entry point (iris LogisticRegression: 150-300 µs of CPU on
        # a busy machine) does not go back and forth.
        if self.inline:
            self.inline_calls += 1
            # One slow call is enough to move off the loop: it already stalled everybody once.
            if seconds > self.threshold or self.average > self.threshold * 0.75:
                self.inline = False
                self.pool_calls = 0
                often = waited and self.inline_calls <= self.probes
                self.probes = self.probes * 2 if often else self.probe_calls
        else:
            self.pool_calls += 1
            if self.pool_calls >= self.probes and self.average < self.threshold / 2:
                self.inline = True
                self.inline_calls = 0


@dataclass
class AlwaysThread(OffloadPolicy):
    """Never inline (for models known to be slow, or `--offload always`)."""

    def record(self, seconds: float, waited: bool = False) -> None:
        self.calls += 1


@dataclass
class AlwaysInline(OffloadPolicy):
    """Always inline (`--offload never`: the caller accepts that a slow predict stalls the loop)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.inline = True

    def record(self, seconds: float, waited: bool = False) -> None:
        self.calls += 1


def call_cost(wall: float, cpu: float, switches: int, alone: bool) -> tuple[float, bool]:
    """What a call that took `wall` seconds, `cpu` of them on the CPU, with `switches` voluntary
    context switches, is charged, and whether it waited. `alone`: it ran on the loop with none of
    the model's calls on the pool, so a switch was a wait of its own (I/O, a sleep, a lock) that
    held the loop all along: wall time. Without a switch it was only preempted, which would hold
    up the loop on the pool as much: CPU time. On the pool, or beside calls still on it, a switch
    may be a wait for the GIL another thread holds, so the CPU time is what it would cost alone."""
    waited = alone and switches > 0
    return (wall if waited else cpu), waited


class CallClock:
    """Reads one thread's wall clock, CPU time and voluntary context switches around a call.

    The CPU time is `thread_time` (the kernel's exact figure); getrusage's per-thread times are
    only brought up to date at a scheduler tick, so they are read for the switches alone.
    """

    __slots__ = ("cpu", "switches", "wall")

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()
        self.switches = getrusage(RUSAGE_THREAD).ru_nvcsw if THREAD_USAGE else 0

    def cost(self, alone: bool) -> tuple[float, bool]:
        """The call's charge since this clock was started (`call_cost`), on the same thread."""
        wall = time.perf_counter() - self.wall
        cpu = time.thread_time() - self.cpu
        if not THREAD_USAGE:
            return wall, alone
        return call_cost(wall, cpu, getrusage(RUSAGE_THREAD).ru_nvcsw - self.switches, alone)
