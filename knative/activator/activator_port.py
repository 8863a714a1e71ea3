"""What a revision's throttler works with: the gateway as the throttler sees it, one replica and
its idle connections, and the counters the throttler reports.

- `Activator` (with its `Clock` and `EndpointSource`): the part of the gateway a throttler uses,
  so the throttler can be read (and tested) without the gateway's serving code;
- `Replica`: one ready endpoint of a revision, its pooled keep-alive connections, its requests in
  flight, and whether it is out of rotation (unreachable, or ejected by outlier detection);
- `RevisionStats`: a revision's traffic as the autoscaler reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from knserve.knative.activator.exchange import Exchange
from knserve.knative.activator.request_metrics import StatusTallies
from knserve.knative.activator.telemetry import Telemetry
from knserve.knative.activator.upstream import UpstreamConnection


class EndpointSource(Protocol):
    """Where the gateway learns a revision's ready replicas (the supervisor)."""

    def endpoints(self, namespace: str, revision: str) -> Sequence[str]:
        """Ready replicas of the revision as "host:port"."""
        ...


class Clock(Protocol):
    """The clock and timers a throttler keeps time with: the gateway's event loop."""

    def time(self) -> float: ...

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle: ...

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle: ...


ConnectDone = Callable[[UpstreamConnection | None, BaseException | None], None]


class Activator(Protocol):
    """What a throttler uses of the gateway that holds it, and nothing more: its clock and timers,
    where endpoints come from, whether to hold requests while no replica is ready (and whom to
    wake), the count of requests in flight across revisions that closing waits on, the timeout
    callback, and a way to open a connection to a replica."""

    source: EndpointSource
    telemetry: Telemetry
    hold_unready: bool
    on_demand: Callable[[str, str], None] | None
    active: int
    draining: asyncio.Event | None

    @property
    def loop(self) -> Clock: ...

    def loop_time(self) -> float:
        """The clock's time (0 before the gateway starts)."""
        ...

    def timed_out(self, exchange: Exchange) -> None:
        """`exchange`'s timer fired."""
        ...

    def connect(self, pool: Replica, endpoint: str, done: ConnectDone) -> None:
        """Open a connection to `endpoint` for `pool` and call `done(connection, error)`."""
        ...


@dataclass(frozen=True)
class RevisionStats:
    """A revision's traffic as the autoscaler reads it."""

    in_flight: int  # requests accepted and not yet answered, queued ones included
    requests_total: int  # monotonic count of requests routed to the revision
    queued: int = 0  # of in_flight, those waiting for a replica slot or a replica
    concurrency_seconds: float = 0.0  # integral of in_flight over time (loop clock), monotonic


class Replica:
    """One ready endpoint of a revision and its idle connections."""

    __slots__ = ("ejected", "endpoint", "idle", "in_flight", "removed", "served")

    def __init__(self, endpoint: str, ejected: bool = False) -> None:
        self.endpoint = endpoint
        self.in_flight = 0
        self.idle: list[UpstreamConnection] = []
        self.removed = False
        self.ejected = (
            ejected  # out of rotation by outlier detection (knserve.knative.activator.outlier)
        )
        # Knative's queue-proxy metrics of this replica (knative/activator/request_metrics.py)
        self.served = StatusTallies()

    def forget(self, connection: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    def close_idle(self) -> None:
        for connection in self.idle:
            connection.transport.close()
        self.idle.clear()
