"""A revision's request timeouts, as Knative's activator and queue-proxy apply them.

Knative wraps every request in `NewTimeoutHandler` (`pkg/http/handler/timeout.go`, wired in
`cmd/activator/main.go` and `pkg/queue/sharedmain/handlers.go`) with three durations from the
Revision spec, all counted from the request's arrival:

- `timeoutSeconds` (default 300, config-defaults `revision-timeout-seconds`): the most a request
  may take in all, queueing included. It fires whether or not the response has begun.
- `responseStartTimeoutSeconds`: the most time until the response begins (its head). Unset or not
  below `timeoutSeconds`, it adds nothing (Knative defaults it only when it is shorter).
- `idleTimeoutSeconds` (default 0, none): the most time between bytes of the response. Before the
  first byte it counts from arrival, as Knative's `lastWriteTime` starts at zero.

What happens on expiry is the gateway's: a 504 with Knative's body before the response has begun,
the connection cut after. This module only says which limit has passed and when to look again; it
takes the clock as an argument and does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# Timers may fire a little before their time (asyncio by its clock resolution, uvloop by rounding
# to milliseconds); a limit counts as passed this close to it, which whole seconds never notice.
EARLY = 0.001


@dataclass(frozen=True)
class RequestTimeouts:
    """A revision's three limits in seconds; 0 turns `response_start` or `idle` off."""

    total: float
    response_start: float = 0.0
    idle: float = 0.0

    @property
    def first(self) -> float:
        """Seconds from arrival to the first moment a limit can pass."""
        first = self.total
        if 0 < self.response_start < first:
            first = self.response_start
        if 0 < self.idle < first:
            first = self.idle
        return first

    def expired(
        self, arrived: float, now: float, started: bool, last_byte: float | None
    ) -> tuple[str | None, float]:
        """The Revision field whose limit has passed at `now` (None: none yet), and when to look
        again. `started`: the response head has arrived; `last_byte`: when the latest response
        bytes arrived (None: none yet)."""
        now += EARLY
        deadline = arrived + self.total
        if now >= deadline:
            return "timeoutSeconds", deadline
        if not started and 0 < self.response_start < self.total:
            start_deadline = arrived + self.response_start
            if now >= start_deadline:
                return "responseStartTimeoutSeconds", start_deadline
            deadline = min(deadline, start_deadline)
        if self.idle > 0:
            idle_deadline = (arrived if last_byte is None else last_byte) + self.idle
            if now >= idle_deadline:
                return "idleTimeoutSeconds", idle_deadline
            deadline = min(deadline, idle_deadline)
        return None, deadline
