"""The gateway: routes requests by Host to revisions, balances them over replicas, queues, counts.

`Gateway` is the local plane's ingress, activator and queue-proxy in one asyncio server (the HTTP
mechanics are in `knserve.knative.proxy`; the choice of revision in `knserve.knative.traffic`):

- Routing: the Host (and `Knative-Serving-Tag`) picks a Route's revision through `RouteTable`.
- Replicas: each revision's ready endpoints come from an `EndpointSource` (the supervisor), read on every
  request and compared with the last set, so a replica that appears or goes away is seen at once
  without any notification. The request goes to the replica with the fewest requests in flight (ties
  broken round-robin), over a pooled keep-alive connection to that replica.
- `containerConcurrency`: a replica never has more than that many requests in flight (0 = no limit).
  The others wait in one FIFO queue per revision and go to the first replica that frees a slot, as
  Knative's queue-proxy holds them in front of the container.
- `timeoutSeconds` bounds the time from arrival (queueing included) to the response head: past it the
  client gets 504 with the reason and the replica connection is dropped. A response that has begun
  streaming is not cut.
- No ready replica: 503 at once with the supervisor's reason, unless the gateway was made with
  `hold_unready=True` (the activator's mode): then the request waits in the same queue, `on_demand`
  is told the revision is wanted, and the request goes out as soon as a replica appears
  (`endpoints_changed`, or a 50 ms poll of the source), or gets 504 at `timeoutSeconds`.
- Metrics for the autoscaler: per revision, requests in flight now (queued included), requests total,
  and the time integral of in-flight requests (`concurrency_seconds`), so the average concurrency over
  any window is the integral's difference divided by the window: exact, no sampling needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from knserve.knative.proxy import ClientProtocol, Exchange, UpstreamConnection, connect_upstream
from knserve.knative.traffic import (
    Destination,
    RouteSpec,
    RouteTable,
    TrafficTarget,
    normalize_host,
)

__all__ = [
    "EndpointSource",
    "Gateway",
    "RevisionStats",
    "RouteSpec",
    "SupervisorEndpoints",
    "TrafficTarget",
]

# Knative's config-defaults revision-timeout-seconds, for a revision the controller has not described.
DEFAULT_TIMEOUT_SECONDS = 300
# Idle connections kept per replica; more than the highest useful concurrency is wasted sockets.
MAX_IDLE_PER_REPLICA = 512
# How often held requests re-read the endpoint source when nobody calls endpoints_changed.
HOLD_POLL_SECONDS = 0.05
# Distinct raw Host headers remembered in their normalized form; cleared when full.
HOST_CACHE_SIZE = 1024


class EndpointSource(Protocol):
    """Where the gateway learns a revision's ready replicas (the supervisor)."""

    def endpoints(self, namespace: str, revision: str) -> Sequence[str]:
        """Ready replicas of the revision as "host:port"."""
        ...


class SupervisorEndpoints:
    """An `EndpointSource` over the supervisor: its ready endpoints, and its status for 503 reasons.

    Wire it as `Gateway(SupervisorEndpoints(supervisor))` plus
    `supervisor.subscribe(gateway.endpoints_changed)`, so held requests go out the moment a replica is ready.
    """

    def __init__(self, supervisor: Any) -> None:
        self.supervisor = supervisor

    def endpoints(self, namespace: str, revision: str) -> Sequence[str]:
        """The revision's ready replicas, from the supervisor's status."""
        return self.supervisor.status(namespace, revision).endpoints  # type: ignore[no-any-return]

    def status(self, namespace: str, revision: str) -> Any:
        """The supervisor's ReplicaStatus (desired, ready, failure) for error messages."""
        return self.supervisor.status(namespace, revision)


@dataclass(frozen=True)
class RevisionStats:
    """A revision's traffic as the autoscaler reads it."""

    in_flight: int  # requests accepted and not yet answered, queued ones included
    requests_total: int  # monotonic count of requests routed to the revision
    queued: int = 0  # of in_flight, those waiting for a replica slot or a replica
    concurrency_seconds: float = 0.0  # integral of in_flight over time (loop clock), monotonic


class Replica:
    """One ready endpoint of a revision and its idle connections."""

    __slots__ = ("endpoint", "idle", "in_flight", "removed")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.in_flight = 0
        self.idle: list[UpstreamConnection] = []
        self.removed = False

    def forget(self, connection: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    def close_idle(self) -> None:
        for connection in self.idle:
            connection.transport.close()
        self.idle.clear()


class RevisionState:
    """A revision as the gateway serves it: its replicas, queue, limits and counters."""

    def __init__(
        self,
        gateway: Gateway,
        namespace: str,
        name: str,
        container_concurrency: int,
        timeout_seconds: int,
    ) -> None:
        self.gateway = gateway
        self.namespace = namespace
        self.name = name
        self.container_concurrency = container_concurrency
        self.timeout_seconds = timeout_seconds
        self.endpoints: tuple[str, ...] = ()
        self.replicas: dict[str, Replica] = {}
        self.ready: list[Replica] = []
        self.queue: deque[Exchange] = deque()
        self.next_index = 0
        self.in_flight = 0
        self.requests_total = 0
        self.integral = 0.0
        self.changed_at = gateway.loop_time()
        self.poll: asyncio.TimerHandle | None = None
        self.appeared = asyncio.Event()

    # -- admission ----------------------------------------------------------------------------
    def admit(self, exchange: Exchange) -> None:
        gateway = self.gateway
        self.requests_total += 1
        self._count(1)
        gateway.active += 1
        exchange.revision = self
        exchange.timer = gateway.loop.call_later(self.timeout_seconds, gateway.timed_out, exchange)
        self.refresh()
        replica = self._pick()
        if replica is not None:
            self._assign(exchange, replica)
        elif self.ready or gateway.hold_unready:
            self.queue.append(exchange)
            if not self.ready:
                self._hold()
        else:
            exchange.respond_error(503, self._unready_message())

    def refresh(self) -> None:
        """Re-read the ready endpoints; start queued requests on new capacity."""
        endpoints = self.gateway.source.endpoints(self.namespace, self.name)
        if type(endpoints) is not tuple:
            endpoints = tuple(endpoints)
        if endpoints == self.endpoints:
            return
        self.endpoints = endpoints
        replicas = {e: self.replicas.get(e) or Replica(e) for e in endpoints}
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
                exchange.respond_error(
                    502,
                    f"Revision {self.namespace}/{self.name} replica {replica.endpoint} could not be "
                    f"reached: {error}",
                )
            elif exchange.state or exchange.replica is not replica:
                self._park(replica, connection)
            else:
                exchange.attach(connection)

        self.gateway.track(connect_upstream(self.gateway.loop, replica, replica.endpoint, done))

    def reconnect(self, exchange: Exchange) -> None:
        """Send `exchange` again on a new connection to its replica (its pooled one was stale)."""
        self._connect(exchange, exchange.replica)

    # -- completion ---------------------------------------------------------------------------
    def release(self, exchange: Exchange, connection: UpstreamConnection | None) -> None:
        """`exchange` is over; free its slot, pool `connection` (if reusable), start the next."""
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

    def _unready_message(self) -> str:
        message = f"Revision {self.namespace}/{self.name} has no ready replica"
        status_of = getattr(self.gateway.source, "status", None)
        if status_of is not None:
            try:
                status = status_of(self.namespace, self.name)
            except Exception:
                status = None
            if status is not None:
                message += f" (desired {status.desired}, ready {status.ready})"
                if status.failure:
                    message += f": {status.failure}"
        return (
            message + f". See `knserve revision describe {self.name} -n {self.namespace}`; "
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

    def close(self) -> None:
        if self.poll is not None:
            self.poll.cancel()
            self.poll = None
        for replica in self.replicas.values():
            replica.removed = True
            replica.close_idle()


class Gateway:
    """The local plane's HTTP ingress: an asyncio server routing by Host to revision replicas."""

    def __init__(
        self,
        endpoints: EndpointSource,
        domain: str = "localhost",
        *,
        hold_unready: bool = False,
        on_demand: Callable[[str, str], None] | None = None,
    ) -> None:
        self.source = endpoints
        self.domain = domain
        self.routes = RouteTable(domain)
        self.hold_unready = hold_unready
        self.on_demand = on_demand
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.active = 0
        self.draining: asyncio.Event | None = None
        self._revisions: dict[tuple[str, str], RevisionState] = {}
        self._host_cache: dict[bytes, str] = {}
        self._connections: set[ClientProtocol] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    # -- configuration (called by the controller) ---------------------------------------------
    def set_route(self, route: RouteSpec) -> None:
        """Serve `route` (replacing a route of the same namespace and name)."""
        self.routes.set_route(route)

    def remove_route(self, namespace: str, name: str) -> None:
        """Stop serving a route; its hosts answer 404 from now on."""
        self.routes.remove_route(namespace, name)

    def set_revision(
        self, namespace: str, revision: str, container_concurrency: int, timeout_seconds: int
    ) -> None:
        """Set a revision's per-replica concurrency limit (0 = none) and its request timeout."""
        if container_concurrency < 0:
            raise ValueError(
                f"Invalid: revision {namespace}/{revision} containerConcurrency is "
                f"{container_concurrency}, it must be 0 (no limit) or more"
            )
        if timeout_seconds <= 0:
            raise ValueError(
                f"Invalid: revision {namespace}/{revision} timeoutSeconds is {timeout_seconds}, "
                "it must be at least 1"
            )
        state = self._revisions.get((namespace, revision))
        if state is None:
            self._revisions[(namespace, revision)] = RevisionState(
                self, namespace, revision, container_concurrency, timeout_seconds
            )
            return
        state.container_concurrency = container_concurrency
        state.timeout_seconds = timeout_seconds
        if state.queue:
            state._drain()

    def remove_revision(self, namespace: str, revision: str) -> None:
        """Forget a deleted revision's state and close its idle connections."""
        state = self._revisions.pop((namespace, revision), None)
        if state is not None:
            state.close()

    def endpoints_changed(self, namespace: str, revision: str) -> None:
        """Re-read a revision's endpoints now (wire to `Supervisor.subscribe`); wakes held requests."""
        state = self._revisions.get((namespace, revision))
        if state is not None:
            state.refresh()

    async def wait_for_endpoints(self, namespace: str, revision: str, timeout: float) -> bool:
        """Wait until the revision has a ready replica; False after `timeout` seconds without one."""
        state = self._revision(namespace, revision)
        deadline = self.loop_time() + timeout
        while True:
            state.refresh()
            if state.ready:
                return True
            remaining = deadline - self.loop_time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                # Woken by endpoints_changed, or re-reads the source in case nobody calls it.
                await asyncio.wait_for(state.appeared.wait(), min(remaining, HOLD_POLL_SECONDS))

    def stats(self, namespace: str, revision: str) -> RevisionStats:
        """A revision's in-flight and total request counts (zeros for a revision never seen)."""
        state = self._revisions.get((namespace, revision))
        return state.stats() if state is not None else RevisionStats(0, 0)

    # -- serving ------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (use port 0 for any free port; see `port`)."""
        self.loop = asyncio.get_running_loop()
        for state in self._revisions.values():
            state.changed_at = self.loop.time()
        self._server = await self.loop.create_server(
            lambda: ClientProtocol(self, self._connections),
            host,
            port,
            reuse_address=True,
            backlog=2048,
        )

    @property
    def port(self) -> int:
        """The port the gateway listens on."""
        if self._server is None:
            raise RuntimeError("Gateway.start() has not been called")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish for up to `grace` seconds, then cut off."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            if not connection.exchanges:
                connection.transport.close()
        if self.active:
            self.draining = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.draining.wait(), grace)
        for connection in list(self._connections):
            connection.transport.abort()
        for state in self._revisions.values():
            state.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def dispatch(self, exchange: Exchange) -> None:
        """Route a parsed request (called by the proxy for each request, in order per connection)."""
        raw = exchange.host
        host = self._host_cache.get(raw)
        if host is None:
            host = normalize_host(raw.decode("latin-1"))
            if len(self._host_cache) >= HOST_CACHE_SIZE:
                self._host_cache.clear()
            self._host_cache[raw] = host
        destination = self.routes.resolve(host, exchange.tag)
        if destination is None:
            exchange.respond_error(404, self.routes.unknown_host_message(host))
        elif not destination.revision:
            exchange.respond_error(503, _no_traffic_message(host, destination))
        else:
            self._revision(destination.namespace, destination.revision).admit(exchange)

    def timed_out(self, exchange: Exchange) -> None:
        """`timeoutSeconds` passed before the response began."""
        exchange.timer = None
        state: RevisionState = exchange.revision
        if exchange.state or exchange.response_started:
            return
        if exchange.replica is None:
            where = (
                f"while waiting for a free replica (all at containerConcurrency="
                f"{state.container_concurrency})"
                if state.ready
                else "while waiting for a replica to become ready"
            )
        else:
            where = f"from replica {exchange.replica.endpoint}"
        exchange.respond_error(
            504,
            f"Revision {state.namespace}/{state.name} gave no response within its timeoutSeconds "
            f"({state.timeout_seconds}s) {where}",
        )

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a reference to a background task until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def loop_time(self) -> float:
        """The loop's clock (0 before start)."""
        return self.loop.time() if self.loop is not None else 0.0

    def _revision(self, namespace: str, revision: str) -> RevisionState:
        state = self._revisions.get((namespace, revision))
        if state is None:
            state = self._revisions[(namespace, revision)] = RevisionState(
                self, namespace, revision, 0, DEFAULT_TIMEOUT_SECONDS
            )
        return state


def _no_traffic_message(host: str, destination: Destination) -> str:
    return (
        f"The route of host {host!r} in namespace {destination.namespace} sends no traffic to any "
        "revision yet (none is ready, or all its targets are at 0 percent); reach a tagged revision "
        "by its tag host or the Knative-Serving-Tag header"
    )
