"""The throttler: a revision's replicas, its FIFO queue, its concurrency limit and its counters.

Knative's activator keeps one throttler per revision (activator/net/throttler.go): it knows the ready
pods, sends each request to a pod with spare capacity, and queues the rest. `RevisionThrottler` is that,
plus what queue-proxy does in front of each container:

- The ready endpoints come from the gateway's `EndpointSource`, re-read on every request and compared
  with the last set (a tuple comparison), so replicas that appear or go away are seen at once.
- A request goes to the replica with the fewest requests in flight, ties broken round-robin, over one of
  that replica's pooled keep-alive connections (a new one when none is idle; a pooled one the
  replica has closed is dropped unused). A replica that refuses a connection (it died; the
  supervisor has not said so yet) leaves the rotation for a second and the request, having sent
  nothing, goes to another replica or waits as if none were ready: the activator's retry, bounded
  by `MAX_SEND_ATTEMPTS`. A request whose bytes reached a replica is not sent elsewhere (see
  exchange.py for the one exception, a bodiless request on a connection reset before any answer).
- Outlier ejection (knserve.knative.activator.outlier): every answer counts toward the replica's
  consecutive errors; an ejected replica leaves the rotation until its back-off is over.
- `containerConcurrency` caps each replica's in-flight requests (0 = no cap). Requests beyond every
  replica's cap wait in one FIFO queue and go, in arrival order, to the first replica that frees a slot.
  The queue is bounded as Knative's breakers bound theirs (knserve.knative.activator.breaker): a
  request beyond it is answered 503 "pending request queue full" with `Retry-After`, at once.
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
import logging
import math
from collections import deque
from time import monotonic

from knserve.knative.activator.activator_port import (
    Activator,
    Clock,
    ConnectDone,
    EndpointSource,
    Replica,
    RevisionStats,
)
from knserve.knative.activator.breaker import (
    RETRY_AFTER_SECONDS,
    queue_depth,
    queue_full_message,
)
from knserve.knative.activator.exchange import Exchange
from knserve.knative.activator.outlier import CONNECTION_FAILURE, OutlierDetector
from knserve.knative.activator.request_metrics import StatusTallies, record
from knserve.knative.activator.timeouts import RequestTimeouts
from knserve.knative.activator.upstream import UpstreamConnection

__all__ = [
    "Activator",
    "Clock",
    "ConnectDone",
    "EndpointSource",
    "Replica",
    "RevisionStats",
    "RevisionThrottler",
]

log = logging.getLogger(__name__)

# Idle connections kept per replica; more than the highest useful concurrency is wasted sockets.
MAX_IDLE_PER_REPLICA = 512
# How often held requests re-read the endpoint source when nobody calls endpoints_changed.
HOLD_POLL_SECONDS = 0.05
# How long a replica that refused a connection stays out of rotation, unless the source replaces it;
# the supervisor notices a dead process well within this.
UNREACHABLE_SECONDS = 1.0
# Replicas a request may find unreachable before it is answered 502: each one leaves the rotation,
# so this bounds the retries when many replicas go at once (a plane shutting down).
MAX_SEND_ATTEMPTS = 3


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
        self.queue_full = 0  # requests answered 503 because the queue was at its bound
        self.all_ejected = 0  # requests answered 503 because every replica was ejected
        self.outliers = OutlierDetector()
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
        # monotonic(), not loop.time(): uvloop's clock ticks in whole milliseconds, which would
        # round a loopback request's latency to 0 (the same clock underneath, so timers agree)
        exchange.arrived = now = monotonic()
        if timeouts.idle:
            exchange.clock = loop.time
        exchange.timer = loop.call_at(now + timeouts.first, gateway.timed_out, exchange)
        self.refresh()
        replica = self._pick()
        if replica is not None:
            self._assign(exchange, replica)
        elif not self.ready and self.outliers.ejected():
            self.all_ejected += 1  # as Envoy's "no healthy upstream": nothing to wait in line for
            self._reject_all_ejected(exchange)
        elif self.ready or gateway.hold_unready:
            if len(self.queue) >= queue_depth(self.container_concurrency, len(self.ready)):
                self.queue_full += 1  # Knative's breakers: beyond their queues, 503 at once
                exchange.respond_error(503, self._queue_full_message(), RETRY_AFTER_SECONDS)
                return
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
        outliers = self.outliers
        outliers.retain(endpoints)
        for endpoint in endpoints:
            replica = self.replicas.get(endpoint)
            replicas[endpoint] = (
                replica
                if replica is not None and not replica.removed
                else Replica(endpoint, outliers.is_ejected(endpoint))
            )
        for endpoint, replica in self.replicas.items():
            if endpoint not in replicas:
                replica.removed = True
                replica.close_idle()
        self.replicas = replicas
        self.ready = [replica for replica in replicas.values() if not replica.ejected]
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
        exchange.assigned = monotonic()
        replica.in_flight += 1
        idle = replica.idle
        while idle:
            connection = idle.pop()
            if not connection.closed and not connection.dropped():
                exchange.attach(connection)
                return
            connection.transport.close()
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

        # An HTTP/2 stream (knserve.knative.activator.h2c) brings its own shared h2c connections.
        connect = getattr(exchange, "connect", None) or self.gateway.connect
        connect(replica, replica.endpoint, done)

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
        self._observe(replica, CONNECTION_FAILURE)
        if not replica.removed:
            replica.removed = True
            replica.close_idle()
            with contextlib.suppress(ValueError):
                self.ready.remove(replica)
            self.gateway.loop.call_later(UNREACHABLE_SECONDS, self._readmit, replica)
        if self.deleted is not None:  # no replica of it will come
            exchange.respond_error(404, self.deleted)
            return
        exchange.attempts += 1
        if exchange.attempts >= MAX_SEND_ATTEMPTS:
            exchange.respond_error(
                502,
                f"Revision {self.namespace}/{self.name}: {exchange.attempts} replicas could not "
                f"be reached, the last {replica.endpoint}: {error}",
            )
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
            if not replica.ejected:
                self.ready.append(replica)
            if self.queue:
                self._drain()

    # -- outlier ejection ---------------------------------------------------------------------
    def _observe(self, replica: Replica, status: int) -> None:
        """Count `replica`'s answer toward outlier detection; eject it if that trips it."""
        now = self.gateway.loop.time()
        until = self.outliers.observe(replica.endpoint, status, now, len(self.replicas))
        if until is None:
            return
        replica.ejected = True
        with contextlib.suppress(ValueError):
            self.ready.remove(replica)
        log.warning(
            "revision %s/%s replica %s ejected for %.1fs by outlier detection (last status %s)",
            self.namespace,
            self.name,
            replica.endpoint,
            until - now,
            status or "connection failure",
        )
        self.gateway.loop.call_at(until, self._rejoin, replica.endpoint)

    def _rejoin(self, endpoint: str) -> None:
        # A timer may fire a hair early (clock resolution); the ejection is over all the same.
        if not self.outliers.rejoin(endpoint, self.gateway.loop.time() + 0.01):
            return
        replica = self.replicas.get(endpoint)
        if replica is None or not replica.ejected:
            return
        replica.ejected = False
        log.info("revision %s/%s replica %s rejoins", self.namespace, self.name, endpoint)
        if not replica.removed:
            self.ready.append(replica)
            if self.queue:
                self._drain()

    def _reject_all_ejected(self, exchange: Exchange) -> None:
        rejoin = self.outliers.next_rejoin() or 0.0
        wait = max(1, math.ceil(rejoin - self.gateway.loop.time()))
        exchange.respond_error(
            503,
            f"no healthy upstream: every ready replica of Revision {self.namespace}/{self.name} "
            f"is ejected by outlier detection after consecutive errors; the first rejoins in "
            f"{wait}s. `knserve revision describe {self.name} -n {self.namespace}` shows its replicas",
            wait,
        )

    def unreachable(self, exchange: Exchange, error: BaseException | None) -> None:
        """`exchange`'s replica reset it before answering even on a new connection."""
        self._unreachable(exchange.replica, exchange, error)

    def reconnect(self, exchange: Exchange) -> None:
        """Send `exchange` again on a new connection to its replica (its pooled one was stale)."""
        self._connect(exchange, exchange.replica)

    # -- completion ---------------------------------------------------------------------------
    def release(self, exchange: Exchange, connection: UpstreamConnection | None) -> None:
        """`exchange` is over; free its slot, pool `connection` (if reusable), start the next."""
        record(self, exchange, monotonic())
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
        if exchange.status:  # 0: the client went away before any answer
            self._observe(replica, exchange.status)
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

    def _queue_full_message(self) -> str:
        return queue_full_message(
            self.namespace, self.name, len(self.queue), self.container_concurrency, len(self.ready)
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
