"""The throttler: a revision's replicas, its FIFO queue, its concurrency limit and its counters.

Knative's activator keeps one throttler per revision (activator/net/throttler.go): it knows the ready
pods, sends each request to a pod with spare capacity, and queues the rest. `RevisionThrottler` is that,
plus what queue-proxy does in front of each container:

- The ready endpoints come from the gateway's `EndpointSource`, re-read on every request and compared
  with the last set (a tuple comparison), so replicas that appear or go away are seen at once.
- A request goes to the replica with the fewest requests in flight, ties broken round-robin, over one of
  that replica's pooled keep-alive connections (a new one when none is idle). A replica that refuses a
  connection (it died; the supervisor has not said so yet) leaves the rotation for a second and the
  request, having sent nothing, goes to another replica or waits as if none were ready.
- `containerConcurrency` caps each replica's in-flight requests (0 = no cap). Requests beyond every
  replica's cap wait in one FIFO queue and go, in arrival order, to the first replica that frees a slot.
- With no ready replica the request is answered 503 with the supervisor's reason, or, when the gateway
  holds unready revisions (the activator's mode), queued until a replica appears: `endpoints_changed`
  wakes it, and a 50 ms poll of the source covers a source that never calls it.
- Counters for the autoscaler: requests in flight now (queued included), requests total, and the time
  integral of in-flight requests, so the average concurrency over any window is exact.
- A deleted revision (`close` with the reason) answers the requests it holds at once with 404 and
  that reason, since no replica of it will ever come; so does one whose replica resets it later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from knserve.knative.activator.exchange import Exchange
from knserve.knative.activator.request_metrics import StatusTallies, record
from knserve.knative.activator.telemetry import Telemetry
from knserve.knative.activator.timeouts import RequestTimeouts
from knserve.knative.activator.upstream import UpstreamConnection

# Idle connections kept per replica; more than the highest useful concurrency is wasted sockets.
MAX_IDLE_PER_REPLICA = 512
# How often held requests re-read the endpoint source when nobody calls endpoints_changed.
HOLD_POLL_SECONDS = 0.05
# How long a replica that refused a connection stays out of rotation, unless the source replaces it;
# the supervisor notices a dead process well within this.
UNREACHABLE_SECONDS = 1.0


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

    __slots__ = ("endpoint", "idle", "in_flight", "removed", "served")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.in_flight = 0
        self.idle: list[UpstreamConnection] = []
        self.removed = False
        # Knative's queue-proxy metrics of this replica (knative/activator/request_metrics.py)
        self.served = StatusTallies()

    def forget(self, connection: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    def close_idle(self) -> None:
        for connection in self.idle:
            connection.transport.close()
        self.idle.clear()


class RevisionThrottler:
    """A revision as the gateway serves it: its replicas, queue, limits and counters."""

    def __init__(
        self,
        gateway: Activator,
        namespace: str,
        name: str,
        container_concurrency: int,
        timeouts: RequestTimeouts,
    ) -> None:
        self.gateway = gateway
        self.namespace = namespace
        self.name = name
        self.container_concurrency = container_concurrency
        self.timeouts = timeouts
        self.endpoints: tuple[str, ...] = ()
        self.replicas: dict[str, Replica] = {}
        self.ready: list[Replica] = []
        self.queue: deque[Exchange] = deque()
        self.next_index = 0
        self.in_flight = 0
        self.requests_total = 0
        self.integral = 0.0
        self.requests = StatusTallies()  # Knative's activator metrics (request_metrics.py)
        self.cold_starts = 0
        self.changed_at = gateway.loop_time()
        self.poll: asyncio.TimerHandle | None = None
        self.appeared = asyncio.Event()
        self.deleted: str | None = None  # why requests fail, once the revision is deleted

    # -- admission ----------------------------------------------------------------------------
    def admit(self, exchange: Exchange) -> None:
        gateway = self.gateway
        self.requests_total += 1
        self._count(1)
        gateway.active += 1
        exchange.revision = self
        loop = gateway.loop
        timeouts = self.timeouts
        exchange.arrived = now = loop.time()
        if timeouts.idle:
            exchange.clock = loop.time
        exchange.timer = loop.call_at(now + timeouts.first, gateway.timed_out, exchange)
        self.refresh()
        replica = self._pick()
        if replica is not None:
            self._assign(exchange, replica)
        elif self.ready or gateway.hold_unready:
            if not self.ready and not self.queue:
                self.cold_starts += 1  # the first request held until a replica starts
            self.queue.append(exchange)
            if exchange.record is not None:
                gateway.telemetry.queued(exchange.record, not self.ready)
            if not self.ready:
                self._hold()
        else:
            exchange.respond_error(503, self._unready_message())

    def refresh(self) -> None:
        """Re-read the ready endpoints; start queued requests on new capacity."""
        try:
            endpoints = self.gateway.source.endpoints(self.namespace, self.name)
        except Exception:
            # A source that does not know the revision (yet) has no ready replica of it.
            endpoints = ()
        if type(endpoints) is not tuple:
            endpoints = tuple(endpoints)
        if endpoints == self.endpoints:
            return
        self.endpoints = endpoints
        replicas = {}
        for endpoint in endpoints:
            replica = self.replicas.get(endpoint)
            replicas[endpoint] = (
                replica if replica is not None and not replica.removed else Replica(endpoint)
            )
        for endpoint, replica in self.replicas.items():
            if endpoint not in replicas:
                replica.removed = True
                replica.close_idle()
        self.replicas = replicas
        self.ready = list(replicas.values())
        if self.ready:
            self.appeared.set()
            self.appeared = asyncio.Event()
            if self.queue:
                self._drain()

    def _pick(self) -> Replica | None:
        ready = self.ready
        limit = self.container_concurrency
        if len(ready) == 1:
            replica = ready[0]
            return replica if not limit or replica.in_flight < limit else None
        best: Replica | None = None
        count = len(ready)
        if not count:
            return None
        start = self.next_index = (self.next_index + 1) % count
        for k in range(count):
            replica = ready[(start + k) % count]
            if limit and replica.in_flight >= limit:
                continue
            if best is None or replica.in_flight < best.in_flight:
                best = replica
        return best

    def _assign(self, exchange: Exchange, replica: Replica) -> None:
        exchange.replica = replica
        if exchange.record is not None:
            self.gateway.telemetry.assigned(exchange.record, self.namespace, self.name)
        exchange.assigned = self.gateway.loop.time()
        replica.in_flight += 1
        idle = replica.idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                exchange.attach(connection)
                return
        self._connect(exchange, replica)

    def _connect(self, exchange: Exchange, replica: Replica) -> None:
        def done(connection: UpstreamConnection | None, error: BaseException | None) -> None:
            if connection is None:
                if not exchange.state and exchange.replica is replica:
                    self._unreachable(replica, exchange, error)
            elif exchange.state or exchange.replica is not replica:
                self._park(replica, connection)
            else:
                exchange.attach(connection)

        self.gateway.connect(replica, replica.endpoint, done)

    def _unreachable(
        self, replica: Replica, exchange: Exchange, error: BaseException | None
    ) -> None:
        """`replica` refused a connection: out of rotation for a while; the request goes elsewhere.

        A replica that died is refused before the supervisor notices and updates the endpoints; the
        request has sent nothing yet, so it is as good as new for another replica (or for the hold
        queue), and only fails when there is nowhere else to go.
        """
        replica.in_flight -= 1
        exchange.replica = None
        if not replica.removed:
            replica.removed = True
            replica.close_idle()
            with contextlib.suppress(ValueError):
                self.ready.remove(replica)
            self.gateway.loop.call_later(UNREACHABLE_SECONDS, self._readmit, replica)
        if self.deleted is not None:  # no replica of it will come
            exchange.respond_error(404, self.deleted)
            return
        target = self._pick()
        if target is not None:
            self._assign(exchange, target)
        elif self.ready or self.gateway.hold_unready:
            self.queue.appendleft(exchange)  # it arrived before everything queued
            if not self.ready:
                self._hold()
        else:
            exchange.respond_error(
                502,
                f"Revision {self.namespace}/{self.name} replica {replica.endpoint} could not be "
                f"reached: {error}",
            )

    def _readmit(self, replica: Replica) -> None:
        if self.replicas.get(replica.endpoint) is replica and replica.removed:
            replica.removed = False
            self.ready.append(replica)
            if self.queue:
                self._drain()

    def unreachable(self, exchange: Exchange, error: BaseException | None) -> None:
        """`exchange`'s replica reset it before answering even on a new connection."""
        self._unreachable(exchange.replica, exchange, error)

    def reconnect(self, exchange: Exchange) -> None:
        """Send `exchange` again on a new connection to its replica (its pooled one was stale)."""
        self._connect(exchange, exchange.replica)

    # -- completion ---------------------------------------------------------------------------
    def release(self, exchange: Exchange, connection: UpstreamConnection | None) -> None:
        """`exchange` is over; free its slot, pool `connection` (if reusable), start the next."""
        record(self, exchange, self.gateway.loop.time())
        self._count(-1)
        gateway = self.gateway
        gateway.active -= 1
        if gateway.active == 0 and gateway.draining is not None:
            gateway.draining.set()
        replica: Replica | None = exchange.replica
        if replica is None:
            with contextlib.suppress(ValueError):
                self.queue.remove(exchange)
            if connection is not None:
                connection.transport.close()
            return
        exchange.replica = None
        replica.in_flight -= 1
        if connection is not None:
            self._park(replica, connection)
        if self.queue and not replica.removed:
            self._drain()

    def _park(self, replica: Replica, connection: UpstreamConnection) -> None:
        if replica.removed or connection.closed or len(replica.idle) >= MAX_IDLE_PER_REPLICA:
            connection.transport.close()
        else:
            replica.idle.append(connection)

    def _drain(self) -> None:
        queue = self.queue
        while queue:
            replica = self._pick()
            if replica is None:
                return
            exchange = queue.popleft()
            if not exchange.state:
                self._assign(exchange, replica)

    # -- no replica ---------------------------------------------------------------------------
    def _hold(self) -> None:
        on_demand = self.gateway.on_demand
        if on_demand is not None:
            on_demand(self.namespace, self.name)
        if self.poll is None:
            self.poll = self.gateway.loop.call_later(HOLD_POLL_SECONDS, self._poll_held)

    def _poll_held(self) -> None:
        self.poll = None
        self.refresh()
        if self.queue and not self.ready:
            self.poll = self.gateway.loop.call_later(HOLD_POLL_SECONDS, self._poll_held)

    def replica_status(self) -> str:
        """The supervisor's view of why no replica is ready, e.g. " (desired 1, ready 0): exited"."""
        status_of = getattr(self.gateway.source, "status", None)
        if status_of is None:
            return ""
        try:
            status = status_of(self.namespace, self.name)
        except Exception:
            return ""
        text = f" (desired {status.desired}, ready {status.ready})"
        return text + f": {status.failure}" if status.failure else text

    def _unready_message(self) -> str:
        return (
            f"Revision {self.namespace}/{self.name} has no ready replica{self.replica_status()}. "
            f"See `knserve revision describe {self.name} -n {self.namespace}`; "
            "the request can be retried once a replica is ready"
        )

    # -- counters -----------------------------------------------------------------------------
    def _count(self, delta: int) -> None:
        now = self.gateway.loop.time()
        self.integral += self.in_flight * (now - self.changed_at)
        self.changed_at = now
        self.in_flight += delta

    def stats(self) -> RevisionStats:
        now = self.gateway.loop_time()
        integral = self.integral + self.in_flight * (now - self.changed_at)
        return RevisionStats(self.in_flight, self.requests_total, len(self.queue), integral)

    def close(self, deleted: str | None = None) -> None:
        """Stop: close idle connections; for a deleted revision, answer every request waiting for
        a replica with 404 and `deleted`, the reason (requests being answered finish as they can)."""
        if self.poll is not None:
            self.poll.cancel()
            self.poll = None
        for replica in self.replicas.values():
            replica.removed = True
            replica.close_idle()
        if deleted is not None:
            self.deleted = deleted
            for exchange in list(self.queue):  # each answer takes it out of the queue
                exchange.respond_error(404, deleted)
