"""A small in-memory ring of the plane's recent traffic, for the built-in dashboard's plots.

Every `interval` seconds the plane reads each revision's counters (requests total, the gateway's
latency sum and count, desired and ready replicas) and `SampleRing.add` turns the differences
since the last reading into one point per revision: requests/s, mean latency over the interval
and the replica counts. The ring keeps `capacity` points (10 minutes at 2 s), so memory stays
fixed however long the plane runs. Pure: it takes plain readings and a time, does no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INTERVAL_SECONDS = 2.0
CAPACITY = 300


@dataclass(frozen=True)
class Reading:
    """One revision's cumulative counters at one moment."""

    requests: int  # requests routed to it, ever
    answered: int  # responses counted in latency_ms_sum
    latency_ms_sum: float
    desired: int
    ready: int


class SampleRing:
    """The last `capacity` points of every revision (keyed "namespace/revision")."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._last: dict[str, Reading] = {}
        self._last_time: float | None = None

    def add(self, now: float, readings: Mapping[str, Reading]) -> None:
        """Record the point at `now` (Unix seconds) from cumulative `readings`."""
        elapsed = None if self._last_time is None else now - self._last_time
        revisions: dict[str, dict[str, float | None]] = {}
        for key, reading in readings.items():
            before = self._last.get(key)
            rps = latency = None
            if before is not None and elapsed and reading.requests >= before.requests:
                rps = (reading.requests - before.requests) / elapsed
                answered = reading.answered - before.answered
                if answered > 0:
                    latency = (reading.latency_ms_sum - before.latency_ms_sum) / answered
            revisions[key] = {
                "rps": rps,
                "latency_ms": latency,
                "desired": reading.desired,
                "ready": reading.ready,
            }
        self.points.append({"time": now, "revisions": revisions})
        self._last = dict(readings)
        self._last_time = now

    def series(self) -> list[dict[str, Any]]:
        """Every point, oldest first."""
        return list(self.points)
