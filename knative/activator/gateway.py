"""The gateway: the local plane's ingress, activator and queue-proxy in one asyncio server.

`Gateway` owns the listening socket and the per-revision state, and ties three parts together:

- `knserve.knative.activator.traffic`: the Host picks a Route's revision, split exactly by percent; the
  `Knative-Serving-Tag` header picks a tag's only with Knative's `tag-header-based-routing` feature
  enabled (`tag_header_routing`), which also marks requests as Knative's ingress then does;
- `knserve.knative.activator.throttler`: per revision, the replica with the fewest requests in flight, the
  `containerConcurrency` cap with its FIFO queue, holding requests while no replica is ready, and the
  counters the autoscaler reads (`stats`);
- `knserve.knative.activator.proxy` and `knserve.knative.activator.upstream`: HTTP/1.1 on asyncio Protocols with httptools,
  streaming both ways over pooled keep-alive connections to replicas.

A revision's `timeoutSeconds`, `responseStartTimeoutSeconds` and `idleTimeoutSeconds` bound each
request from its arrival (queueing included) as Knative's activator bounds it
(`knserve.knative.activator.timeouts`): past one of them before the response has begun the client gets 504
with Knative's body, "activator request timeout", and the reason; after, the client connection is
cut, so a response stopped short never passes for a whole one. Either way the replica connection
is dropped.

A Route may go on naming a revision that has been deleted (Knative keeps the Route's last traffic,
with AllTrafficAssigned=False RevisionMissing, until its spec changes). A request for it, by a tag
host or by the split, is answered at once with 404 and Knative's activator's words for a revision
its lister does not have, "Error getting active endpoint: revision.serving.knative.dev "{name}" not
found", never held for a replica that cannot come; requests held when it is deleted get the same.

Errors the gateway answers itself are plain text and say what to do: 404 lists the hosts served or
names the deleted revision, 503 gives the supervisor's reason a revision has no ready replica, 502
names the replica that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from knserve.knative.activator.exchange import Exchange
from knserve.knative.activator.h2c_upstream import H2Upstreams
from knserve.knative.activator.proxy import ClientProtocol
from knserve.knative.activator.telemetry import Telemetry
from knserve.knative.activator.throttler import (
    HOLD_POLL_SECONDS,
    ConnectDone,
    EndpointSource,
    Replica,
    RevisionStats,
    RevisionThrottler,
)
from knserve.knative.activator.timeouts import RequestTimeouts
from knserve.knative.activator.traffic import (
    Destination,
    RouteSpec,
    RouteTable,
    TrafficTarget,
    normalize_host,
)
from knserve.knative.activator.upstream import connect_upstream
from knserve.knative.apiserver.outlier_annotations import OutlierDetection

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
# The body Knative's activator answers a timed-out request with (cmd/activator/main.go); ours goes on
# to say which limit passed where.
TIMEOUT_BODY = "activator request timeout"
# The body of Knative's activator for a revision its lister does not have (activator/handler/
# context_handler.go sendError: the API's NotFound error), followed by ours.
NOT_FOUND_BODY = 'Error getting active endpoint: revision.serving.knative.dev "{}" not found'
# Distinct raw Host headers remembered in their normalized form; cleared when full.
HOST_CACHE_SIZE = 1024


class ReplicaStatus(Protocol):
    """What the gateway reads of a revision's replicas (the supervisor's `ReplicaStatus`)."""

    @property
    def desired(self) -> int: ...

    @property
    def ready(self) -> int: ...

    @property
    def endpoints(self) -> Sequence[str]: ...

    @property
    def failure(self) -> str | None: ...


class ReplicaSource(Protocol):
    """The supervisor, as far as the gateway asks it about replicas."""

    def status(self, namespace: str, revision: str) -> ReplicaStatus: ...


class SupervisorEndpoints:
    """An `EndpointSource` over the supervisor: its ready endpoints, and its status for 503 reasons.

    Wire it as `Gateway(SupervisorEndpoints(supervisor))` plus
    `supervisor.subscribe(gateway.endpoints_changed)`, so held requests go out the moment a replica is ready.
    """

    def __init__(
        self,
        supervisor: ReplicaSource,
        fixed: Mapping[tuple[str, str], Sequence[str]] | None = None,
    ) -> None:
        self.supervisor = supervisor
        # The plane's own services (the broker ingress) live at fixed addresses, not in replicas.
        self.fixed = dict(fixed or {})

    def endpoints(self, namespace: str, revision: str) -> Sequence[str]:
        """The revision's ready replicas, from the supervisor's status (or a fixed address)."""
        fixed = self.fixed.get((namespace, revision))
        if fixed is not None:
            return fixed
        return self.supervisor.status(namespace, revision).endpoints

    def status(self, namespace: str, revision: str) -> ReplicaStatus:
        """The supervisor's ReplicaStatus (desired, ready, failure) for error messages."""
        return self.supervisor.status(namespace, revision)


class Gateway:
    """The local plane's HTTP ingress: an asyncio server routing by Host to revision replicas."""

    def __init__(
        self,
        endpoints: EndpointSource,
        domain: str = "localhost",
        *,
        hold_unready: bool = False,
        on_demand: Callable[[str, str], None] | None = None,
        tag_header_routing: bool = False,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.source = endpoints
        # Request ids and trace headers always; spans and the access log when configured.
        self.telemetry = telemetry or Telemetry()
        self.domain = domain
        self.routes = RouteTable(domain)
        self.hold_unready = hold_unready
        # Knative's config-features `tag-header-based-routing`: Disabled by default, as on a cluster.
        self.tag_header_routing = tag_header_routing
        self.on_demand = on_demand
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.active = 0
        self.draining: asyncio.Event | None = None
        self._revisions: dict[tuple[str, str], RevisionThrottler] = {}
        # Deleted revisions a route may still name (pruned to those named when routes change).
        self._deleted: set[tuple[str, str]] = set()
        self._host_cache: dict[bytes, str] = {}
        # InferenceService hosts: host -> routes to Knative Services, most specific first
        self._aliases: dict[str, tuple[Any, ...]] = {}
        self._alias_hosts: dict[tuple[str, str], set[str]] = {}
        self._connections: set[ClientProtocol] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.h2_upstreams = H2Upstreams()  # h2c connections to replicas, for HTTP/2 clients

    # -- configuration (called by the controller) ---------------------------------------------
    def set_route(self, route: RouteSpec) -> None:
        """Serve `route` (replacing a route of the same namespace and name)."""
        self.routes.set_route(route)
        self._forget_unnamed_deleted()

    def set_isvc_routes(self, namespace: str, name: str, routes: tuple[Any, ...]) -> None:
        """Serve an InferenceService's own host: each route (an `IsvcRoute`) sends requests whose
        path it `matches` to its Knative Service's host; `()` stops serving it."""
        for host in self._alias_hosts.pop((namespace, name), set()):
            self._aliases.pop(host, None)
        hosts: dict[str, list[Any]] = {}
        for route in routes:
            hosts.setdefault(route.host, []).append(route)
        for host, found in hosts.items():
            self._aliases[host] = tuple(found)
        if hosts:
            self._alias_hosts[(namespace, name)] = set(hosts)

    def remove_route(self, namespace: str, name: str) -> None:
        """Stop serving a route; its hosts answer 404 from now on."""
        self.routes.remove_route(namespace, name)
        self._forget_unnamed_deleted()

    def _forget_unnamed_deleted(self) -> None:
        if self._deleted:
            named = {(r.namespace, t.revision) for r in self.routes.routes() for t in r.targets}
            self._deleted &= named

    def set_revision(
        self,
        namespace: str,
        revision: str,
        container_concurrency: int,
        timeout_seconds: int,
        response_start_timeout_seconds: int = 0,
        idle_timeout_seconds: int = 0,
        outlier_detection: OutlierDetection | None = None,
    ) -> None:
        """Set a revision's per-replica concurrency limit (0 = none), its request timeouts:
        `timeoutSeconds`, `responseStartTimeoutSeconds` and `idleTimeoutSeconds` (0 = none), and
        its outlier detection (None: Istio's defaults)."""
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
        for field, value in (
            ("responseStartTimeoutSeconds", response_start_timeout_seconds),
            ("idleTimeoutSeconds", idle_timeout_seconds),
        ):
            if value < 0:
                raise ValueError(
                    f"Invalid: revision {namespace}/{revision} {field} is {value}, "
                    "it must be 0 (none) or more"
                )
        timeouts = RequestTimeouts(
            timeout_seconds, response_start_timeout_seconds, idle_timeout_seconds
        )
        self._deleted.discard((namespace, revision))  # made again under the same name
        state = self._revisions.get((namespace, revision))
        if state is None:
            state = self._revisions[(namespace, revision)] = RevisionThrottler(
                self, namespace, revision, container_concurrency, timeouts
            )
        state.outliers.config = outlier_detection or OutlierDetection()
        state.container_concurrency = container_concurrency
        state.timeouts = timeouts
        if state.queue:
            state._drain()

    def remove_revision(self, namespace: str, revision: str) -> None:
        """Forget a deleted revision's state and close its idle connections. Requests held for it,
        and any a route still sends it, are answered 404 at once, until `set_revision` names it
        again."""
        self._deleted.add((namespace, revision))
        state = self._revisions.pop((namespace, revision), None)
        if state is not None:
            state.close(
                f"{NOT_FOUND_BODY.format(revision)}: Revision {namespace}/{revision} was deleted "
                "while the request waited for a replica of it"
            )

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

    def throttlers(self) -> list[RevisionThrottler]:
        """Every revision the gateway serves, with its counters (read by metrics at scrape time)."""
        return list(self._revisions.values())

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
        await self.h2_upstreams.close()
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
        tag = exchange.tag if self.tag_header_routing else None
        destination = self.routes.resolve(host, tag)
        if destination is None and host in self._aliases:
            destination = self._resolve_alias(host, exchange, tag)
        if destination is None:
            exchange.respond_error(404, self.routes.unknown_host_message(host))
        elif not destination.revision:
            exchange.respond_error(503, _no_traffic_message(host, destination))
        else:
            key = (destination.namespace, destination.revision)
            state = self._revisions.get(key)
            if state is None:
                if key in self._deleted:
                    exchange.respond_error(404, self._deleted_message(host, destination))
                    return
                state = self._revision(*key)
            if self.tag_header_routing:
                _append_route_header(exchange, destination)
            state.admit(exchange)

    def _deleted_message(self, host: str, destination: Destination) -> str:
        route = self.routes.route_of(host)
        tag = f" (tag {destination.tag!r})" if destination.tag else ""
        by, see = f"the route of host {host!r}", "The Route's status"
        if route is not None:
            by = f"route {route.namespace}/{route.name}"
            see = f"`knserve route describe {route.name} -n {route.namespace}`"
        return (
            f"{NOT_FOUND_BODY.format(destination.revision)}: {by} still sends this request{tag} to "
            f"Revision {destination.namespace}/{destination.revision}, which was deleted; take it "
            f"out of the Service's spec.traffic or create it again. {see} says RevisionMissing"
        )

    def _resolve_alias(self, host: str, exchange: Exchange, tag: str | None) -> Destination | None:
        path = exchange.head.split(b" ", 2)[1].decode("latin-1") if exchange.head else "/"
        for route in self._aliases[host]:
            if route.matches(host, path):
                return self.routes.resolve(route.service_host, tag)
        return None

    def timed_out(self, exchange: Exchange) -> None:
        """The exchange's timer fired: answer 504 or cut it off if a limit has passed, else wait on."""
        exchange.timer = None
        if exchange.state:
            return
        state: RevisionThrottler = exchange.revision
        timeouts = state.timeouts
        field, deadline = timeouts.expired(
            exchange.arrived, self.loop.time(), exchange.response_started, exchange.last_byte
        )
        if field is None:
            exchange.timer = self.loop.call_at(deadline, self.timed_out, exchange)
            return
        if exchange.response_started:
            exchange.respond_error(504, "")  # too late for a status: the client is cut off
            return
        if exchange.replica is None:
            where = (
                f"while waiting for a free replica (all at containerConcurrency="
                f"{state.container_concurrency})"
                if state.ready
                else "while waiting for a replica to become ready" + state.replica_status()
            )
        else:
            where = f"from replica {exchange.replica.endpoint}"
        limit = {
            "timeoutSeconds": timeouts.total,
            "responseStartTimeoutSeconds": timeouts.response_start,
            "idleTimeoutSeconds": timeouts.idle,
        }[field]
        exchange.respond_error(
            504,
            f"{TIMEOUT_BODY}: Revision {state.namespace}/{state.name} gave no response within "
            f"its {field} ({limit:g}s) {where}",
        )

    def connect(self, pool: Replica, endpoint: str, done: ConnectDone) -> None:
        """Open a connection to a replica for a throttler, as a task closing waits for."""
        self.track(connect_upstream(self.loop, pool, endpoint, done))

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a reference to a background task until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def loop_time(self) -> float:
        """The loop's clock (0 before start)."""
        return self.loop.time() if self.loop is not None else 0.0

    def _revision(self, namespace: str, revision: str) -> RevisionThrottler:
        state = self._revisions.get((namespace, revision))
        if state is None:
            state = self._revisions[(namespace, revision)] = RevisionThrottler(
                self, namespace, revision, 0, RequestTimeouts(DEFAULT_TIMEOUT_SECONDS)
            )
        return state


def _append_route_header(exchange: Exchange, destination: Destination) -> None:
    """What Knative's ingress appends with tag-header-based-routing Enabled (route/resources/
    ingress.go): `Knative-Serving-Tag` on a request that came by a tag host, and
    `Knative-Serving-Default-Route: true` on one that took the percent split."""
    if destination.tag is None:
        header = b"knative-serving-default-route: true\r\n"
    elif destination.tag != exchange.tag:
        header = b"knative-serving-tag: " + destination.tag.encode("latin-1") + b"\r\n"
    else:
        return  # it came by the header itself
    exchange.head = exchange.head[:-2] + header + b"\r\n"  # the head ends with its blank line


def _no_traffic_message(host: str, destination: Destination) -> str:
    return (
        f"The route of host {host!r} in namespace {destination.namespace} sends no traffic to any "
        "revision yet (none is ready, or all its targets are at 0 percent); reach a tagged revision "
        "by its tag host (or the Knative-Serving-Tag header, with the tag-header-based-routing "
        "feature enabled)"
    )
